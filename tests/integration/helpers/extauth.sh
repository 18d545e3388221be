#!/bin/bash
# An External Authentication helper using only CommuniGate's documented
# protocol.  MODE (first argument): good, hang-once, crash-once, reverse.
# "good" accepts the password ext-secret for any user.  "hang-once" and
# "crash-once" misbehave on their first VRFY (a marker file remembers it),
# then behave.  "reverse" answers each pair of VRFY requests in reverse order.
mode=$1
marker=$2
PYTHON=${3:-python3}
echo "* extauth helper started in mode $mode"
answer() {  # number user password
    if [ "$3" = "ext-secret" ]; then echo "$1 OK"; else echo "$1 ERROR wrong password"; fi
}
held=""
while read -r number command rest; do
    case "$command" in
        INTF) echo "$number INTF 3" ;;
        NEW)
            # "creator" mode: make the account with the command line, then OK.
            if [ "$mode" = "creator" ]; then
                "$PYTHON" -m communigate.cli.main --base . account create "$rest" \
                    UseExtPassword=YES UseAppPassword=NO > /dev/null && echo "$number OK" \
                    || echo "$number ERROR cannot create"
            else
                echo "$number ERROR unknown account"
            fi ;;
        QUIT) echo "$number OK"; exit 0 ;;
        VRFY)
            set -- $rest
            [ "${1:0:1}" = "(" ] && shift
            user=$1; password=$2
            if { [ "$mode" = "hang-once" ] || [ "$mode" = "crash-once" ]; } && [ ! -e "$marker" ]; then
                touch "$marker"
                [ "$mode" = "crash-once" ] && exit 3
                exec cat > /dev/null  # never answer again
            fi
            if [ "$mode" = "reverse" ]; then
                if [ -z "$held" ]; then held="$number $user $password"; continue; fi
                answer "$number" "$user" "$password"
                answer $held
                held=""
                continue
            fi
            answer "$number" "$user" "$password" ;;
        *) echo "$number ERROR unknown command" ;;
    esac
done
