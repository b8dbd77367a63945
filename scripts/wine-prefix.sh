# Sourced from the repository's root (scripts/wine-tests.sh, scripts/dist-tests.sh): installs
# Wine and the mingw-w64 linker from Debian and the rustup target x86_64-pc-windows-gnu, then
# makes the Wine prefix target/wine-prefix (exported as WINEPREFIX, with WINEDEBUG=-all) in which
# Rust programs run. Rust's standard library asks bcryptprimitives.dll for random bytes
# (ProcessPrng), which Wine 8.0 lacks: a four-line stand-in that calls RtlGenRandom is built here
# and put in the prefix (test environment only; real Windows has the DLL).
if ! command -v wine >/dev/null 2>&1 || ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
    echo "wine-prefix: installing wine and the mingw-w64 linker" >&2
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y wine64 gcc-mingw-w64-x86-64 >&2
fi
rustup target add x86_64-pc-windows-gnu >&2

export WINEPREFIX="$PWD/target/wine-prefix" WINEDEBUG=-all
mkdir -p "$WINEPREFIX"
shim_dir="$PWD/target/wine-shim"
mkdir -p "$shim_dir"
cat >"$shim_dir/bcryptprimitives.c" <<'C'
#include <windows.h>
/* RtlGenRandom, exported by advapi32 as SystemFunction036. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
C
x86_64-w64-mingw32-gcc -shared -O2 -o "$shim_dir/bcryptprimitives.dll" \
    "$shim_dir/bcryptprimitives.c" -ladvapi32
timeout 120 wineboot --init >/dev/null 2>&1 || true
cp "$shim_dir/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
