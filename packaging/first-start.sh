#!/bin/sh
# arclock-first-start: everything an appliance needs before `systemctl start
# arclockd`, each step only if missing (run again any time, as root):
#   1. the arclock user and group, /etc/arclock (systemd-sysusers, -tmpfiles);
#   2. a SoftHSM2 token "arclock" in /var/lib/arclock/softhsm with the KEK and
#      the JWT signing key generated inside it (non-extractable);
#   3. the user PIN as the unit's credential /etc/arclock/hsm.pin (root, 0600;
#      systemd hands it over by LoadCredential=, it is never in the config);
#      the security-officer PIN in /etc/arclock/hsm-so.pin (root, 0600: move it
#      offline);
#   4. a self-signed certificate in /etc/arclock/tls if none is there (replace
#      it with your own and `systemctl reload arclockd`).
# A hardware HSM needs only 3 and 4: set [hsm] module and token_label in
# /etc/arclock/arclockd.toml and put its user PIN in /etc/arclock/hsm.pin.
set -eu

CONF=/etc/arclock/arclockd.toml
STATE=/var/lib/arclock
TLS=/etc/arclock/tls

[ "$(id -u)" -eq 0 ] || { echo "arclock-first-start: run as root" >&2; exit 1; }
systemd-sysusers arclock.conf
systemd-tmpfiles --create arclock.conf
install -d -o arclock -g arclock -m 0700 "$STATE" "$STATE/softhsm" "$STATE/softhsm/tokens"

work="$(mktemp -d "$STATE/first-start.XXXXXX")"
trap 'rm -rf "$work"' EXIT
chown arclock:arclock "$work"

if [ -s /etc/arclock/hsm.pin ]; then
  # The token exists: provisioning only adds missing keys, with the known PIN.
  install -o arclock -g arclock -m 0600 /etc/arclock/hsm.pin "$work/user.pin"
  [ -s /etc/arclock/hsm-so.pin ] && install -o arclock -g arclock -m 0600 /etc/arclock/hsm-so.pin "$work/so.pin"
fi
cert="$TLS/cert.pem"; key="$TLS/key.pem"
[ -e "$cert" ] || cert="$work/tls/cert.pem"
[ -e "$key" ] || key="$work/tls/key.pem"
sed -e 's/^provision = "attach"/provision = "dev"/' \
    -e "s|^pin_credential = .*|pin_file = \"$work/user.pin\"\nso_pin_file = \"$work/so.pin\"|" \
    -e "s|^tls_cert = .*|tls_cert = \"$cert\"|" \
    -e "s|^tls_key = .*|tls_key = \"$key\"|" \
    "$CONF" > "$work/provision.toml"
chown arclock:arclock "$work/provision.toml"
# As the daemon's user: the token files and keys belong to it.
runuser -u arclock -- env SOFTHSM2_CONF=/etc/arclock/softhsm2.conf \
  arclockd --config "$work/provision.toml" provision

[ -s /etc/arclock/hsm.pin ] || install -o root -g root -m 0600 "$work/user.pin" /etc/arclock/hsm.pin
[ -e "$work/so.pin" ] && [ ! -s /etc/arclock/hsm-so.pin ] && install -o root -g root -m 0600 "$work/so.pin" /etc/arclock/hsm-so.pin
if [ -e "$work/tls/cert.pem" ]; then
  install -o root -g arclock -m 0644 "$work/tls/cert.pem" "$TLS/cert.pem"
  install -o root -g arclock -m 0640 "$work/tls/key.pem" "$TLS/key.pem"
fi
arclockd --config "$CONF" --check-config
echo "arclock-first-start: done. Start the daemon:  systemctl enable --now arclockd"
echo "  operators: usermod -aG arclock-admin NAME, then arclock-console"
