# Sourced inside a private `dbus-run-session` by the scripts that test against a Secret Service
# (scripts/keyring-tests.sh, scripts/codex-interop.sh):
#
#   . scripts/secret-service.sh
#   start_secret_service PASSWORD
#
# gnome-keyring-daemon creates (or unlocks) the login collection with PASSWORD, then serves its
# secrets component on this session's bus; returns once an item can be stored (a probe item),
# within 5 s.
start_secret_service() {
    echo -n "$1" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
    gnome-keyring-daemon --start --components=secrets >/dev/null
    local _
    for _ in $(seq 50); do
        if echo -n probe | secret-tool store --label=probe service authstore-probe username probe 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "secret-service: gnome-keyring did not answer within 5 s" >&2
    return 1
}
