# bash completion for connetctl (installed as
# /usr/share/bash-completion/completions/connetctl)
_connetctl() {
	local cur prev words cword
	_init_completion || return
	local commands="status list peers add-source remove-source add-destination remove-destination reload clients relays tokens wait diagnose init help"
	case $prev in
	--instance | -i)
		local names
		names=$(busctl --system --list --no-legend 2>/dev/null | awk '$1 ~ /^org\.connetd\.Connetd1\./ {sub(/^org\.connetd\.Connetd1\._?/, "", $1); print $1}')
		COMPREPLY=($(compgen -W "$names" -- "$cur"))
		return
		;;
	--route)
		COMPREPLY=($(compgen -W "any direct relay" -- "$cur"))
		return
		;;
	--proxy-proto-version)
		COMPREPLY=($(compgen -W "v1 v2" -- "$cur"))
		return
		;;
	--file-server-root)
		_filedir -d
		return
		;;
	--udp-idle-timeout)
		COMPREPLY=($(compgen -W "30s 60s 2m 5m" -- "$cur"))
		return
		;;
	--udp-max-flows)
		return # a number
		;;
	--path)
		COMPREPLY=($(compgen -W "any direct" -- "$cur"))
		return
		;;
	--timeout)
		COMPREPLY=($(compgen -W "10s 30s 1m 5m infinity" -- "$cur"))
		return
		;;
	--unit-instance)
		return # INSTANCE:NAME
		;;
	--file)
		_filedir
		return
		;;
	--out)
		_filedir -d
		return
		;;
	--from)
		_filedir
		return
		;;
	--public-addr | --port | --relay-port | --clients | --name)
		return # a host, a number or a name
		;;
	esac
	local cmd="" i
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		--instance | -i) ((i++)) ;;
		-*) ;;
		*) cmd=${words[i]}; break ;;
		esac
	done
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "$commands --instance --json --help" -- "$cur"))
		return
	fi
	case $cmd in
	add-source) COMPREPLY=($(compgen -W "--route --udp-idle-timeout --udp-max-flows --json" -- "$cur")) ;;
	add-destination) COMPREPLY=($(compgen -W "--route --proxy-proto-version --file-server-root --udp-idle-timeout --udp-max-flows --json" -- "$cur")) ;;
	tokens)
		case $prev in
		add | revoke) COMPREPLY=($(compgen -W "- --file" -- "$cur")) ;;
		tokens) COMPREPLY=($(compgen -W "add revoke" -- "$cur")) ;;
		esac
		;;
	init)
		case $prev in
		init) COMPREPLY=($(compgen -W "server client" -- "$cur")) ;;
		*)
			local sub="" j
			for ((j = i + 1; j < cword; j++)); do
				case ${words[j]} in server | client) sub=${words[j]}; break ;; esac
			done
			case $sub in
			server) COMPREPLY=($(compgen -W "--public-addr --out --port --relay-port --clients --force --json" -- "$cur")) ;;
			client) COMPREPLY=($(compgen -W "--from --name --out --force --json" -- "$cur")) ;;
			esac
			;;
		esac
		;;
	wait) COMPREPLY=($(compgen -W "--path --timeout --unit-instance --json" -- "$cur")) ;;
	help) COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
	*) COMPREPLY=($(compgen -W "--json --help" -- "$cur")) ;;
	esac
}
complete -F _connetctl connetctl
