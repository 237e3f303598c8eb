package portmap

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// fakeRouter answers NAT-PMP and PCP on loopback like a router would,
// recording the requests.
type fakeRouter struct {
	conn    *net.UDPConn
	pcp     bool // answer PCP; otherwise answer it with "unsupported version"
	ext     netip.Addr
	mu      sync.Mutex
	pcpReqs []PCPMap
	pmpReqs []PMPRequest
	wg      sync.WaitGroup
}

func newFakeRouter(t *testing.T, pcp bool) *fakeRouter {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRouter{conn: c, pcp: pcp, ext: netip.MustParseAddr("198.51.100.1")}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(func() { c.Close(); r.wg.Wait() })
	return r
}

func (r *fakeRouter) port() uint16 { return uint16(r.conn.LocalAddr().(*net.UDPAddr).Port) }

func (r *fakeRouter) serve() {
	defer r.wg.Done()
	buf := make([]byte, 1100)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		b := buf[:n]
		var reply []byte
		r.mu.Lock()
		if IsPCP(b) {
			if !r.pcp {
				reply = AppendPCPUnsupported(nil)
			} else if req, err := ParsePCPMap(b); err == nil {
				r.pcpReqs = append(r.pcpReqs, req)
				resp := req
				resp.Response, resp.External = true, netip.AddrPortFrom(r.ext, 40000)
				reply = AppendPCPMap(nil, resp)
			}
		} else if req, err := ParsePMPRequest(b); err == nil {
			r.pmpReqs = append(r.pmpReqs, req)
			if req.AddrOnly {
				reply = AppendPMPAddrResponse(nil, PMPAddrResponse{External: r.ext})
			} else {
				reply = AppendPMPMapResponse(nil, PMPMapResponse{Internal: req.Map.Internal, External: 40001, Lifetime: req.Map.Lifetime})
			}
		}
		r.mu.Unlock()
		if reply != nil {
			_, _ = r.conn.WriteToUDPAddrPort(reply, from)
		}
	}
}

func TestPCPMapsRenewsWithTheSameNonceAndDeletes(t *testing.T) {
	r := newFakeRouter(t, true)
	m := &Mapper{Gateway: loopback, Port: 19192, ServerPort: r.port(), Lifetime: time.Hour}
	ctx := context.Background()
	mp, err := m.Map(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mp.Proto != "pcp" || mp.External != netip.MustParseAddrPort("198.51.100.1:40000") || mp.Lifetime != time.Hour {
		t.Fatalf("mapping %v", mp)
	}
	again, err := m.Map(ctx, mp)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, again); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pcpReqs) != 3 {
		t.Fatalf("%d PCP requests, want map, renew, delete", len(r.pcpReqs))
	}
	first, renew, del := r.pcpReqs[0], r.pcpReqs[1], r.pcpReqs[2]
	if first.Client != loopback || first.Internal != 19192 || first.Protocol != ProtoUDP || first.Lifetime != 3600 {
		t.Fatalf("first request %+v", first)
	}
	if renew.Nonce != first.Nonce || renew.External.Port() != 40000 {
		t.Fatalf("renewal %+v does not reuse nonce and port of %+v", renew, first)
	}
	if del.Lifetime != 0 || del.Nonce != first.Nonce {
		t.Fatalf("delete %+v", del)
	}
}

func TestNATPMPIsUsedWhenTheRouterRefusesPCP(t *testing.T) {
	r := newFakeRouter(t, false)
	m := &Mapper{Gateway: loopback, Port: 19192, ServerPort: r.port(), Lifetime: 2 * time.Hour}
	mp, err := m.Map(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if mp.Proto != "nat-pmp" || mp.External != netip.MustParseAddrPort("198.51.100.1:40001") {
		t.Fatalf("mapping %v", mp)
	}
	if err := m.Delete(context.Background(), mp); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	last := r.pmpReqs[len(r.pmpReqs)-1]
	if last.AddrOnly || last.Map.Lifetime != 0 || last.Map.SuggestedExt != 0 || last.Map.Internal != 19192 {
		t.Fatalf("delete request %+v", last)
	}
}

// fakeIGD is a UPnP internet gateway device description and SOAP
// endpoint.
func fakeIGD(t *testing.T) (*url.URL, *[]string) {
	var mu sync.Mutex
	var calls []string
	mux := http.NewServeMux()
	mux.HandleFunc("/desc.xml", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><friendlyName>lab</friendlyName>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl</controlURL><eventSubURL>/evt</eventSubURL><SCPDURL>/scpd.xml</SCPDURL>
</service></serviceList></device></deviceList></device></deviceList></device></root>`)
	})
	mux.HandleFunc("/ctl", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		action := r.Header.Get("SOAPAction")
		mu.Lock()
		calls = append(calls, action+" "+string(body))
		mu.Unlock()
		name := action[strings.LastIndex(action, "#")+1 : len(action)-1]
		inner := ""
		if name == "GetExternalIPAddress" {
			inner = "<NewExternalIPAddress>198.51.100.9</NewExternalIPAddress>"
		}
		w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
		_, _ = io.WriteString(w, `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>`+
			`<u:`+name+`Response xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">`+inner+`</u:`+name+`Response></s:Body></s:Envelope>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL + "/desc.xml")
	return u, &calls
}

func TestUPnPIsUsedWhenNeitherPCPNorNATPMPAnswers(t *testing.T) {
	loc, calls := fakeIGD(t)
	// A closed UDP port: PCP and NAT-PMP fail at once (ICMP unreachable).
	closed, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(closed.LocalAddr().(*net.UDPAddr).Port)
	closed.Close()
	m := &Mapper{Gateway: loopback, Port: 19192, ServerPort: port, UPnPLocation: loc, Lifetime: time.Hour}
	start := time.Now()
	mp, err := m.Map(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if mp.Proto != "upnp" || mp.External != netip.MustParseAddrPort("198.51.100.9:19192") {
		t.Fatalf("mapping %v", mp)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %v: the NAT-PMP/PCP tries are not bounded", el)
	}
	if err := m.Delete(context.Background(), mp); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(*calls, "\n")
	for _, want := range []string{"#AddPortMapping", "<NewExternalPort>19192</NewExternalPort>", "<NewProtocol>UDP</NewProtocol>",
		"<NewInternalClient>127.0.0.1</NewInternalClient>", "<NewLeaseDuration>3600</NewLeaseDuration>", "#DeletePortMapping"} {
		if !strings.Contains(got, want) {
			t.Errorf("SOAP calls lack %q:\n%s", want, got)
		}
	}
}

func TestNoGatewayNoMapping(t *testing.T) {
	if _, err := (&Mapper{Port: 1}).Map(context.Background(), nil); err == nil {
		t.Fatal("mapped without a gateway")
	}
}
