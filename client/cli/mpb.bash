# bash completion for mpb: commands, then the objects the broker has (mpb ls) for the
# argument that names one, and the global options anywhere.
_mpb() {
    local cur=${COMP_WORDS[COMP_CWORD]} i cmd="" n=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        -e | --endpoint | -k | --authkey-file | --connect-timeout) ((i++)) ;;
        -*) ;;
        *) [ -z "$cmd" ] && cmd=${COMP_WORDS[i]} || ((n++)) ;;
        esac
    done
    case ${COMP_WORDS[COMP_CWORD - 1]} in
    -k | --authkey-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    -e | --endpoint | --connect-timeout | --timeout | --interval | -i | -r) return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W '--endpoint --authkey-file --json --key-json --connect-timeout
            --help --version --timeout --done' -- "$cur"))
    elif [ -z "$cmd" ]; then
        COMPREPLY=($(compgen -W 'info ls get set incr del append put task-done peek clients kill slowlog monitor clear wait lock
            pool ping watch help' -- "$cur"))
    elif [ "$cmd" = help ] && [ $n = 0 ]; then
        COMPREPLY=($(compgen -W 'info ls get set incr del append put task-done peek clients kill slowlog monitor clear wait lock
            pool ping watch' -- "$cur"))
    elif [ "$cmd" = pool ] && [ $n = 0 ]; then
        COMPREPLY=($(compgen -W 'map apply --watch' -- "$cur"))
    elif [ $n = 0 ] && [[ $cmd != ping && $cmd != watch ]]; then
        local -a opts=()
        for ((i = 1; i < COMP_CWORD; i++)); do
            case ${COMP_WORDS[i]} in
            -e | --endpoint | -k | --authkey-file) opts+=("${COMP_WORDS[i]}" "${COMP_WORDS[i + 1]}") ;;
            esac
        done
        COMPREPLY=($(compgen -W "$(mpb "${opts[@]}" --connect-timeout 1 ls 2>/dev/null |
            cut -f1)" -- "$cur"))
    fi
}
complete -F _mpb mpb
