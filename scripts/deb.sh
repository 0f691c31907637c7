#!/usr/bin/env bash
# Builds arclock_<version>-1_amd64.deb into target/deb/ from a release build:
# both binaries (stripped), ONNX Runtime, the models, the hardened unit,
# sysusers/tmpfiles, /etc/arclock as conffiles, man pages and completions
# (generated from the binaries' own clap definitions), arclock-first-start
# and the maintainer scripts in packaging/debian/. Then runs lintian, which
# must report no error. dpkg-deb rather than cargo-deb: the layout is already
# `make install-files`, and dpkg-deb needs nothing from crates.io.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
STATE="${ARCLOCK_STATE_DIR:-$ROOT/var}"
CARGO="${CARGO:-cargo}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
REVISION=1
ARCH="$(dpkg --print-architecture)"
NAME="arclock_${VERSION}-${REVISION}_${ARCH}"
OUT="$ROOT/target/deb"
PKG="$OUT/$NAME"

# Packaging tools from Debian (dpkg-dev: dpkg-shlibdeps; lintian), if missing.
need=()
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v lintian >/dev/null || need+=(lintian)
if ((${#need[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

"$CARGO" build --release -p arclockd -p arclock-console
rm -rf "$PKG" "$OUT/$NAME.deb"
mkdir -p "$PKG/DEBIAN"
make -s install-files DESTDIR="$PKG" PREFIX=/usr BIN_SRC=target/release STATE="$STATE"
# The three ELF files (ONNX Runtime under whatever version install-files put).
ELF=("$PKG/usr/bin/arclockd" "$PKG/usr/bin/arclock-console" "$PKG"/usr/lib/arclock/libonnxruntime.so.*)
strip --strip-unneeded --remove-section=.comment --remove-section=.note "${ELF[@]}"
install -D -m 0755 packaging/first-start.sh "$PKG/usr/sbin/arclock-first-start"

# Man pages and completions, from the binaries themselves.
gen() { "target/release/$1" --generate "$2"; }
mkdir -p "$PKG/usr/share/man/man8" "$PKG/usr/share/man/man1"
gen arclockd man | gzip -9n > "$PKG/usr/share/man/man8/arclockd.8.gz"
gen arclock-console man | gzip -9n > "$PKG/usr/share/man/man1/arclock-console.1.gz"
for bin in arclockd arclock-console; do
  gen "$bin" bash | install -D -m 0644 /dev/stdin "$PKG/usr/share/bash-completion/completions/$bin"
  gen "$bin" zsh | install -D -m 0644 /dev/stdin "$PKG/usr/share/zsh/vendor-completions/_$bin"
  gen "$bin" fish | install -D -m 0644 /dev/stdin "$PKG/usr/share/fish/vendor_completions.d/$bin.fish"
done
cat > "$PKG/usr/share/man/man8/arclock-first-start.8" <<'MAN'
.TH arclock-first-start 8 "" "arclock" "System Administration"
.SH NAME
arclock-first-start \- create the SoftHSM2 token, PIN credential and certificate arclockd needs
.SH SYNOPSIS
.B arclock-first-start
.SH DESCRIPTION
Run once as root after installing, before
.BR "systemctl enable --now arclockd" .
Each step happens only if missing: the arclock user and directories, a SoftHSM2 token
with the key-encryption key and the JWT signing key generated inside it, the user PIN as
the unit's credential /etc/arclock/hsm.pin (0600), and a self-signed certificate in
/etc/arclock/tls. With a hardware HSM, set [hsm] in /etc/arclock/arclockd.toml and
put its PIN in /etc/arclock/hsm.pin instead.
.SH SEE ALSO
.BR arclockd (8),
.BR arclock-console (1)
MAN
gzip -9n "$PKG/usr/share/man/man8/arclock-first-start.8"

# Documentation: copyright (DEP-5), the Debian changelog, model licences.
DOC="$PKG/usr/share/doc/arclock"
gzip -9nc packaging/debian/changelog > "$DOC/changelog.Debian.gz"
install -m 0644 packaging/debian/copyright "$DOC/copyright"
[ -f "$ROOT/../shared/models/LICENSE-Silent-Face-Anti-Spoofing.txt" ] &&
  install -m 0644 "$ROOT/../shared/models/LICENSE-Silent-Face-Anti-Spoofing.txt" "$DOC/"

install -D -m 0644 packaging/debian/lintian-overrides "$PKG/usr/share/lintian/overrides/arclock"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$PKG/DEBIAN/"
install -m 0644 packaging/debian/conffiles "$PKG/DEBIAN/conffiles"

# Depends from what the binaries (procps: the unit's ExecReload= runs kill) (and ONNX Runtime, loaded at run time) link.
shlib="$(mktemp -d)"
trap 'rm -rf "$shlib"' EXIT
mkdir -p "$shlib/debian"
printf 'Source: arclock\n\nPackage: arclock\nArchitecture: any\n' > "$shlib/debian/control"
(cd "$shlib" && dpkg-shlibdeps -O "${ELF[@]/#/-e}" 2>/dev/null) > "$shlib/deps"
shdeps="$(sed -n 's/^shlibs:Depends=//p' "$shlib/deps")"
size="$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)"
cat > "$PKG/DEBIAN/control" <<CONTROL
Package: arclock
Version: ${VERSION}-${REVISION}
Architecture: ${ARCH}
Maintainer: ArcLock maintainers <packaging@arclock.example>
Installed-Size: ${size}
Depends: ${shdeps}, systemd (>= 247), procps
Recommends: softhsm2
Section: admin
Priority: optional
Homepage: https://arclock.invalid/
Description: face-biometric authentication appliance
 arclockd serves a mobile REST API over TLS: it finds the face in a photo,
 checks liveness, computes an ArcFace embedding with ONNX Runtime in locked
 memory and compares it with the user's template, which is stored only
 encrypted under per-user keys wrapped by a PKCS#11 HSM. It signs RS256
 access tokens in the HSM, rate-limits, locks out brute force and keeps a
 tamper-evident audit trail. arclock-console is the operator's terminal
 console. The unit runs hardened under systemd.
CONTROL
(cd "$PKG" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$PKG/DEBIAN/md5sums"
chmod 0644 "$PKG/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz --build "$PKG" "$OUT/$NAME.deb" >/dev/null
echo "deb: $OUT/$NAME.deb ($(du -h "$OUT/$NAME.deb" | cut -f1))"

# lintian: no error (warnings are printed for people to read).
lintian --fail-on error "$OUT/$NAME.deb" || { echo "deb: lintian reports errors (above)" >&2; exit 1; }
echo "deb: lintian reports no errors"
