package appliance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testCert makes a certificate for backup.example signed by a throw-away
// CA (not self-signed), valid from notBefore for a year, and its key.
func testCert(t *testing.T, notBefore time.Time) (certPEM, keyPEM string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"}, NotBefore: notBefore, NotAfter: notBefore.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "backup.example"}, DNSNames: []string{"backup.example"},
		NotBefore: notBefore, NotAfter: notBefore.Add(365 * 24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})) + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
}

// serveTLS runs e's server and returns its address.
func serveTLS(t *testing.T, e *testEnv) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- e.s.Serve(ctx, func(a string) { addr <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return <-addr
}

func servedFingerprint(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return Fingerprint(conn.ConnectionState().PeerCertificates[0].Raw)
}

func tlsStatusOf(t *testing.T, e *testEnv, method string, body any) TLSStatus {
	t.Helper()
	w := e.do("socket", method, "/api/v1/tls", body)
	if w.Code != http.StatusOK {
		t.Fatalf("%s /api/v1/tls: %d %s", method, w.Code, w.Body)
	}
	var st TLSStatus
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// The setup step HTTPS: the served certificate is shown, an uploaded one
// and a newly generated one are swapped in at once and kept for the next
// start, and bad input is refused with the reason.
func TestTLSAPI(t *testing.T) {
	data := t.TempDir()
	e := newEnv(t, Config{DataDir: data, Listen: "127.0.0.1:0", TLSMode: "auto"})
	addr := serveTLS(t, e)
	first := servedFingerprint(t, addr)
	st := tlsStatusOf(t, e, "GET", nil)
	if st.Mode != "auto" || !st.Active || st.Fingerprint != first || !st.SelfSigned || st.Pending || !st.Changeable || !slices.Contains(st.Names, "localhost") {
		t.Fatalf("status at start: %+v (served %s)", st, first)
	}

	// An uploaded certificate with its chain.
	certPEM, keyPEM := testCert(t, time.Now().Add(-time.Hour))
	st = tlsStatusOf(t, e, "POST", TLSInput{CertPEM: certPEM, KeyPEM: keyPEM})
	blk, _ := pem.Decode([]byte(certPEM))
	if want := Fingerprint(blk.Bytes); st.Fingerprint != want || servedFingerprint(t, addr) != want {
		t.Fatalf("after upload: status %s, served %s, want %s", st.Fingerprint, servedFingerprint(t, addr), want)
	}
	if st.SelfSigned || st.Pending || st.Subject != "CN=backup.example" || !slices.Equal(st.Names, []string{"backup.example"}) {
		t.Fatalf("status after upload: %+v", st)
	}
	if strings.Contains(e.logs.String(), "PRIVATE KEY") || !strings.Contains(e.logs.String(), "TLS certificate uploaded") {
		t.Fatalf("log after upload:\n%s", e.logs.String())
	}
	if fi, err := os.Stat(filepath.Join(data, "tls", "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stored key: %v %v", fi, err)
	}

	// Bad input, each with its reason; the served certificate stays.
	_, otherKey := testCert(t, time.Now().Add(-time.Hour))
	oldCert, oldKey := testCert(t, time.Now().Add(-2*365*24*time.Hour))
	for _, c := range []struct {
		in   TLSInput
		want string
	}{
		{TLSInput{CertPEM: certPEM, KeyPEM: otherKey}, "certificate and key: "},
		{TLSInput{CertPEM: certPEM}, "key_pem is empty"},
		{TLSInput{KeyPEM: keyPEM}, "cert_pem is empty"},
		{TLSInput{CertPEM: "not a certificate", KeyPEM: keyPEM}, "certificate and key: "},
		{TLSInput{CertPEM: oldCert, KeyPEM: oldKey}, "not now"},
		{TLSInput{Generate: true, CertPEM: certPEM, KeyPEM: keyPEM}, "either generate"},
	} {
		w := e.do("socket", "POST", "/api/v1/tls", c.in)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("POST %+v: %d %s, want 400 %q", c.in, w.Code, w.Body, c.want)
		}
	}
	if servedFingerprint(t, addr) != st.Fingerprint {
		t.Fatal("a refused upload changed the served certificate")
	}

	// A new self-signed one.
	gen := tlsStatusOf(t, e, "POST", TLSInput{Generate: true})
	if !gen.SelfSigned || gen.Fingerprint == first || gen.Fingerprint == st.Fingerprint || servedFingerprint(t, addr) != gen.Fingerprint {
		t.Fatalf("after generate: %+v, served %s", gen, servedFingerprint(t, addr))
	}
	if left, _ := filepath.Glob(filepath.Join(data, ".tls-new-*")); len(left) != 0 {
		t.Fatalf("left over: %v", left)
	}

	// Only admins.
	op := e.user("op", "operator")
	if w := e.do(op, "GET", "/api/v1/tls", nil); w.Code != http.StatusForbidden {
		t.Errorf("operator GET /api/v1/tls: %d", w.Code)
	}
	e.s.Close()

	// The next start serves it.
	e2 := newEnv(t, Config{DataDir: data, Listen: "127.0.0.1:0", TLSMode: "auto"})
	if got := servedFingerprint(t, serveTLS(t, e2)); got != gen.Fingerprint {
		t.Fatalf("after a restart: served %s, want %s", got, gen.Fingerprint)
	}
}

// Without TLS the certificate is stored for the next start with --tls
// auto; with --tls-cert/--tls-key the API leaves the operator's files.
func TestTLSAPIOffAndFile(t *testing.T) {
	e := newEnv(t, Config{})
	st := tlsStatusOf(t, e, "GET", nil)
	if st.Mode != "off" || st.Active || st.Fingerprint != "" || st.Pending {
		t.Fatalf("plain HTTP status: %+v", st)
	}
	st = tlsStatusOf(t, e, "POST", TLSInput{Generate: true})
	if st.Active || !st.Pending || len(st.Fingerprint) != 95 {
		t.Fatalf("after generate without TLS: %+v", st)
	}
	_, fpr, err := loadTLS(Config{TLSMode: "auto"}, e.dir)
	if err != nil || fpr != st.Fingerprint {
		t.Fatalf("--tls auto would serve %s (%v), want %s", fpr, err, st.Fingerprint)
	}

	cert, key := filepath.Join(e.dir, "tls", "cert.pem"), filepath.Join(e.dir, "tls", "key.pem")
	f := newEnv(t, Config{TLSMode: "file", TLSCert: cert, TLSKey: key})
	if st := tlsStatusOf(t, f, "GET", nil); st.Mode != "file" || st.Changeable || !strings.Contains(st.Reason, "--tls-cert") {
		t.Fatalf("file mode status: %+v", st)
	}
	if w := f.do("socket", "POST", "/api/v1/tls", TLSInput{Generate: true}); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "--tls-cert") {
		t.Fatalf("POST in file mode: %d %s", w.Code, w.Body)
	}
}
