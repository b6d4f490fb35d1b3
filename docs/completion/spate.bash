# SPDX-License-Identifier: MIT
# bash completion for spate(1); installed as
# share/bash-completion/completions/spate.
_spate()
{
	local cur prev words cword
	_init_completion || return

	local cmds="run put tail deploy rm log stat top demo bench version help"
	local i cmd="" sub="" nargs=0
	for ((i = 1; i < cword; i++)); do
		case "${words[i]}" in
		--log-format) ((i++)); continue ;;
		--log-format=*) continue ;;
		esac
		if [[ -z $cmd ]]; then
			cmd=${words[i]}
		elif [[ ( $cmd == bench || $cmd == log ) && -z $sub ]]; then
			sub=${words[i]}
		elif [[ ${words[i]} != -* ]]; then
			((nargs++))
		fi
	done

	if [[ -z $cmd ]]; then
		case "$prev" in
		--log-format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
		esac
		COMPREPLY=($(compgen -W "$cmds --log-format --help --version" -- "$cur"))
		return
	fi

	# Stream names of the CONFIG given as the first argument.
	_spate_streams()
	{
		local cfg=$1
		[[ -r $cfg ]] || return
		sed -n '/^streams:/,/^[a-z]/s/^[[:space:]]*-[[:space:]]*name:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$cfg"
	}
	_spate_consumers()
	{
		local cfg=$1
		[[ -r $cfg ]] || return
		sed -n '/^consumers:/,/^[a-z]/s/^[[:space:]]*-[[:space:]]*name:[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$cfg"
	}
	local cfgarg=""
	for ((i = 2; i < cword; i++)); do
		if [[ ${words[i]} != -* && ${words[i-1]} != --log-format ]]; then
			cfgarg=${words[i]}
			break
		fi
	done

	case "$cmd" in
	run)
		case "$prev" in
		--log-format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
		--seconds|--interval) return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--seconds --interval --log-format --help" -- "$cur"))
		else
			_filedir '@(yaml|yml)'
		fi
		;;
	put|tail)
		case "$prev" in
		--from) COMPREPLY=($(compgen -W "trim_horizon latest" -- "$cur")); return ;;
		-k|--key|-n|--count|--shard) return ;;
		esac
		if [[ $cur == -* ]]; then
			if [[ $cmd == put ]]; then
				COMPREPLY=($(compgen -W "-k --key -q --quiet -v --print-seq --help" -- "$cur"))
			else
				COMPREPLY=($(compgen -W "--from --shard -n --count -f --follow --help" -- "$cur"))
			fi
		elif ((nargs == 0)); then
			_filedir '@(yaml|yml)'
		elif ((nargs == 1)); then
			COMPREPLY=($(compgen -W "$(_spate_streams "$cfgarg")" -- "$cur"))
		fi
		;;
	deploy)
		if ((nargs == 0)); then
			_filedir '@(yaml|yml)'
		elif ((nargs == 1)); then
			COMPREPLY=($(compgen -W "$(_spate_consumers "$cfgarg")" -- "$cur"))
		else
			_filedir so
		fi
		;;
	rm)
		if ((nargs == 0)); then
			_filedir '@(yaml|yml)'
		else
			COMPREPLY=($(compgen -W "$(_spate_streams "$cfgarg")" -- "$cur"))
		fi
		;;
	log)
		if [[ -z $sub ]]; then
			COMPREPLY=($(compgen -W "verify dump stats repair export" -- "$cur"))
		elif [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--from --at -n --pcapng --shard --help" -- "$cur"))
		else
			_filedir -d
		fi
		;;
	bench)
		if [[ -z $sub ]]; then
			COMPREPLY=($(compgen -W "ring pipeline persist replay ingress" -- "$cur"))
		elif [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--json --seconds --help" -- "$cur"))
		fi
		;;
	stat|top)
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--json --interval --help" -- "$cur"))
		elif ((nargs == 0)); then
			# Buses with a counters region.
			local b
			b=$(ls /dev/shm 2>/dev/null | sed -n 's/^spate\.\(.*\)\.\.stats$/\1/p')
			COMPREPLY=($(compgen -W "$b" -- "$cur"))
		fi
		;;
	help)
		COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
		;;
	esac
} &&
	complete -F _spate spate
