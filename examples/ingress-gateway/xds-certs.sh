#!/bin/sh
# Usage: xds-certs.sh DIR
#
# With the test CA of credential.sh in DIR (made if missing), issues what rudder and the gateway
# need to speak mutual TLS on the xDS port, as istiod's 15012: rudder's server certificate for
# localhost and 127.0.0.1 (DIR/xds.pem, DIR/xds-key.pem), and the gateway's client certificate
# with the SPIFFE id of Istio's ingress gateway service account
# (spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account; DIR/gateway.pem,
# DIR/gateway-key.pem). rudder sends gateway credentials only to a proxy that proved such an
# identity, and only to identities allowed to read Secrets (--credential-reader).
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
if [ ! -f ca.pem ]; then
    openssl req -x509 $key -days 30 -subj /CN=example-ca -keyout ca-key.pem -out ca.pem 2>/dev/null
fi
issue() { # NAME SUBJECT EXTENSIONS
    openssl req -new $key -subj "$2" -keyout "$1-key.pem" -out "$1.csr" 2>/dev/null
    printf '%b' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
issue xds /CN=rudder 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
issue gateway /CN=istio-ingressgateway \
    'subjectAltName=URI:spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account\nextendedKeyUsage=clientAuth\n'
