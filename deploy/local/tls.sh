#!/usr/bin/env bash
# A local certificate authority and a server certificate for 127.0.0.1 and localhost, made on
# first use (openssl) in DIR (default deploy/local/run/tls):
#   ca.pem      the CA to trust: SSL_CERT_FILE / REQUESTS_CA_BUNDLE / AWS_CA_BUNDLE
#   ca.key      its key (never leaves DIR)
#   server.pem  the server certificate chain (leaf, then the CA)
#   server.key  its key
# The CA lives 10 years; the server certificate 90 days and is renewed here when fewer than
# 30 remain (a running stsvend picks the new files up by itself).
set -euo pipefail
dir="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run/tls}"
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
command -v openssl >/dev/null || { echo "tls.sh: openssl is missing (Debian package openssl)" >&2; exit 1; }
umask 077
if [ ! -s ca.pem ] || [ ! -s ca.key ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=stsvend local development CA" -keyout ca.key -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  rm -f server.pem server.key
fi
if [ ! -s server.pem ] || ! openssl x509 -in server.pem -noout -checkend $((30 * 86400)) >/dev/null; then
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout server.key.new -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 90 \
    -extfile server.ext -out server.crt 2>/dev/null
  cat server.crt ca.pem >server.pem.new
  mv server.key.new server.key
  mv server.pem.new server.pem
  rm -f server.csr server.ext server.crt ca.srl
fi
chmod 644 ca.pem
echo "$dir"
