#!/bin/sh
# Usage: credential.sh DIR > httpbin-credential.yaml
#
# Makes a test CA in DIR (once: DIR/ca.pem is what clients trust), issues a new certificate for
# httpbin.example.com with it (DIR/httpbin.pem, DIR/httpbin-key.pem), and prints the Kubernetes
# TLS Secret istio-system/httpbin-credential holding them. Run it again to rotate the certificate.
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
if [ ! -f ca.pem ]; then
    openssl req -x509 $key -days 30 -subj /CN=example-ca -keyout ca-key.pem -out ca.pem 2>/dev/null
fi
openssl req -new $key -subj /CN=httpbin.example.com -keyout httpbin-key.pem -out httpbin.csr 2>/dev/null
printf 'subjectAltName=DNS:httpbin.example.com\nextendedKeyUsage=serverAuth\n' > httpbin.ext
openssl x509 -req -in httpbin.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
    -extfile httpbin.ext -out httpbin.pem 2>/dev/null
cat <<SECRET
apiVersion: v1
kind: Secret
metadata:
  name: httpbin-credential
  namespace: istio-system
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 httpbin.pem)
  tls.key: $(base64 -w0 httpbin-key.pem)
SECRET
