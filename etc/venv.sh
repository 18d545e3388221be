# Sourced by etc/quickstart.sh and .ci/run: makes sure .venv (a virtual
# environment of the system's python3, as PEP 668 asks on Debian 12 and
# Ubuntu 24.04) exists in the current folder, installing Debian's
# python3-venv first when the interpreter lacks it.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
if ! python3 -c "import ensurepip, venv" 2>/dev/null; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
