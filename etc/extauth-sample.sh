#!/bin/sh
# A sample External Authentication helper for communigate (CommuniGate's
# protocol).  Configure it with:
#   communigate server settings \
#     'ExternalAUTH={Enabled=YES; ProgramName="/etc/communigate/extauth-sample.sh"; Timeout=10s; RestartPause=5s;}'
# and give accounts UseExtPassword=YES.  It accepts the password written in
# /etc/communigate/passwords (lines "user@domain password"); replace the
# check with your own.  Answers: "nnn OK", "nnn ERROR text" (refused),
# "nnn FAILURE text" (temporary); lines starting with "*" are logged.
PASSWORDS=/etc/communigate/passwords
echo "* sample helper started"
while read -r number command rest; do
    case "$command" in
        INTF) echo "$number INTF 3" ;;
        QUIT) echo "$number OK"; exit 0 ;;
        VRFY)
            set -- $rest
            case "$1" in "("*) shift ;; esac
            user=$1
            password=$(printf '%s' "$2" | sed 's/^"\(.*\)"$/\1/')
            if [ ! -r "$PASSWORDS" ]; then
                echo "$number FAILURE no password file"
            elif grep -qxF "$user $password" "$PASSWORDS"; then
                echo "$number OK"
            else
                echo "$number ERROR incorrect password"
            fi ;;
        *) echo "$number ERROR unsupported command" ;;
    esac
done
