package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// A minimal UPnP internet gateway device: SSDP answers to searches on the
// LAN, a device description, and the WANIPConnection:1 actions a port
// mapping client uses (GetExternalIPAddress, AddPortMapping,
// DeletePortMapping), backed by the same DNAT rules as NAT-PMP and PCP.

const (
	ssdpGroup = "239.255.255.250:1900"
	wanIPConn = "urn:schemas-upnp-org:service:WANIPConnection:1"
	igdDevice = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
)

func (s *server) serveUPnP(ctx context.Context, lanIf string, lanAddr netip.Addr, maxLife time.Duration) error {
	ifi, err := net.InterfaceByName(lanIf)
	if err != nil {
		return fmt.Errorf("LAN interface: %w", err)
	}
	group, _ := net.ResolveUDPAddr("udp4", ssdpGroup)
	mc, err := net.ListenMulticastUDP("udp4", ifi, group)
	if err != nil {
		return fmt.Errorf("join SSDP group: %w", err)
	}
	hl, err := net.Listen("tcp4", net.JoinHostPort(lanAddr.String(), "5000"))
	if err != nil {
		mc.Close()
		return fmt.Errorf("UPnP HTTP: %w", err)
	}
	location := "http://" + hl.Addr().String() + "/desc.xml"
	mux := http.NewServeMux()
	mux.HandleFunc("/desc.xml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
		_, _ = io.WriteString(w, deviceDescription)
	})
	mux.HandleFunc("/ctl", func(w http.ResponseWriter, r *http.Request) { s.soap(w, r, maxLife) })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(hl) }()
	go func() {
		<-ctx.Done()
		mc.Close()
		_ = hs.Close()
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := mc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf[:n])))
			if err != nil || req.Method != "M-SEARCH" {
				continue
			}
			st := req.Header.Get("ST")
			if st != wanIPConn && st != igdDevice && st != "ssdp:all" && st != "upnp:rootdevice" {
				continue
			}
			reply := "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nEXT:\r\nLOCATION: " + location +
				"\r\nSERVER: Linux UPnP/1.1 connetd-natlab/1\r\nST: " + st + "\r\nUSN: uuid:c0nne7d0-1ab0::" + st + "\r\n\r\n"
			uc, err := net.DialUDP("udp4", nil, from)
			if err != nil {
				continue
			}
			_, _ = uc.Write([]byte(reply))
			uc.Close()
		}
	}()
	log.Printf("natpmpd: UPnP IGD at %s", location)
	return nil
}

// soapArgs reads the action's arguments: the children of the one element
// inside the SOAP Body.
func soapArgs(r io.Reader) (map[string]string, error) {
	dec := xml.NewDecoder(io.LimitReader(r, 64<<10))
	args := map[string]string{}
	depth := 0
	var cur string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return args, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			cur = t.Name.Local
		case xml.CharData:
			if depth == 4 { // Envelope > Body > Action > Argument
				args[cur] += string(t)
			}
		case xml.EndElement:
			depth--
		}
	}
}

func (s *server) soap(w http.ResponseWriter, r *http.Request, maxLife time.Duration) {
	action := strings.Trim(r.Header.Get("SOAPAction"), `"`)
	_, name, _ := strings.Cut(action, "#")
	args, err := soapArgs(r.Body)
	if err != nil {
		http.Error(w, "bad SOAP", http.StatusBadRequest)
		return
	}
	from, _ := netip.ParseAddrPort(r.RemoteAddr)
	out := ""
	switch name {
	case "GetExternalIPAddress":
		out = "<NewExternalIPAddress>" + s.external.String() + "</NewExternalIPAddress>"
	case "AddPortMapping":
		ext, err1 := strconv.ParseUint(args["NewExternalPort"], 10, 16)
		in, err2 := strconv.ParseUint(args["NewInternalPort"], 10, 16)
		client, err3 := netip.ParseAddr(args["NewInternalClient"])
		life, _ := strconv.ParseUint(args["NewLeaseDuration"], 10, 32)
		if err1 != nil || err2 != nil || err3 != nil || args["NewProtocol"] != "UDP" || client != from.Addr().Unmap() {
			soapFault(w, 402, "Invalid Args")
			return
		}
		d := time.Duration(life) * time.Second
		if d == 0 || d > maxLife {
			d = maxLife
		}
		got, err := s.setMapping(netip.AddrPortFrom(client, uint16(in)), uint16(ext), d)
		if err != nil || got != uint16(ext) {
			if err == nil { // UPnP IGD:1 has no "other port": refuse
				_, _ = s.setMapping(netip.AddrPortFrom(client, uint16(in)), 0, 0)
			}
			soapFault(w, 718, "ConflictInMappingEntry")
			return
		}
	case "DeletePortMapping":
		ext, err := strconv.ParseUint(args["NewExternalPort"], 10, 16)
		if err != nil || !s.deleteExternal(uint16(ext)) {
			soapFault(w, 714, "NoSuchEntryInArray")
			return
		}
	default:
		soapFault(w, 401, "Invalid Action")
		return
	}
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	_, _ = io.WriteString(w, `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>`+
		`<u:`+name+`Response xmlns:u="`+wanIPConn+`">`+out+`</u:`+name+`Response></s:Body></s:Envelope>`)
}

func soapFault(w http.ResponseWriter, code int, desc string) {
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>`+
		`<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0">`+
		`<errorCode>%d</errorCode><errorDescription>%s</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`, code, desc)
}

const deviceDescription = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>
<device><deviceType>` + igdDevice + `</deviceType><friendlyName>connetd NAT lab router</friendlyName><UDN>uuid:c0nne7d0-1ab0</UDN>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType><UDN>uuid:c0nne7d0-1ab1</UDN>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType><UDN>uuid:c0nne7d0-1ab2</UDN>
<serviceList><service><serviceType>` + wanIPConn + `</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl</controlURL><eventSubURL>/evt</eventSubURL><SCPDURL>/scpd.xml</SCPDURL>
</service></serviceList></device></deviceList></device></deviceList></device></root>`
