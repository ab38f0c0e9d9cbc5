package appliance

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// TLS of the TCP listener (Config.TLSMode):
//   - "" or "off": plain HTTP (the default of `cairn serve`);
//   - "auto": a self-signed certificate made on first start and kept in
//     DATA/tls (the default of the appliance);
//   - "file": Config.TLSCert and Config.TLSKey (PEM).
//
// Only TLS 1.2 with ECDHE and AEAD suites, and TLS 1.3, are offered.

// tlsSuites are the TLS 1.2 suites offered (TLS 1.3 suites are fixed by
// crypto/tls and all AEAD).
var tlsSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// tlsDir holds the generated certificate in the data dir.
const tlsDir = "tls"

// loadTLS returns the TLS config of cfg (nil for plain HTTP) and the
// SHA-256 fingerprint of the certificate.
func loadTLS(cfg Config, dataDir string) (*tls.Config, string, error) {
	certFile, keyFile := cfg.TLSCert, cfg.TLSKey
	switch cfg.TLSMode {
	case "", "off":
		if certFile == "" && keyFile == "" {
			return nil, "", nil
		}
	case "auto":
		certFile, keyFile = filepath.Join(dataDir, tlsDir, "cert.pem"), filepath.Join(dataDir, tlsDir, "key.pem")
		if err := ensureSelfSigned(certFile, keyFile); err != nil {
			return nil, "", err
		}
	case "file":
	default:
		return nil, "", fmt.Errorf("tls mode %q: want off, auto or file", cfg.TLSMode)
	}
	if certFile == "" || keyFile == "" {
		return nil, "", errors.New("tls: give both the certificate and the key file")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, "", fmt.Errorf("tls: load %s and %s: %w", certFile, keyFile, err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: tlsSuites,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
	}
	return tc, Fingerprint(cert.Certificate[0]), nil
}

// Fingerprint is the SHA-256 of a DER certificate as colon-separated
// upper-case hex, as browsers show it.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// ensureSelfSigned makes an ECDSA P-256 self-signed certificate valid for
// ten years, for the host name, "localhost" and the machine's addresses,
// unless both files exist.
func ensureSelfSigned(certFile, keyFile string) error {
	_, cerr := os.Stat(certFile)
	_, kerr := os.Stat(keyFile)
	if cerr == nil && kerr == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "cairn"
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"Cairn appliance (self-signed)"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{host, "localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ipn.IP)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// wrapTLS puts TLS on the TCP listener when the config asks for it and
// records the fingerprint for the system endpoint and the console.
func (s *Server) wrapTLS(l net.Listener) (net.Listener, error) {
	tc, fpr, err := loadTLS(s.cfg, s.dataDir)
	if err != nil {
		return nil, err
	}
	if s.sys != nil {
		s.sys.mu.Lock()
		s.sys.fpr = fpr
		s.sys.urlScheme = map[bool]string{true: "https", false: "http"}[tc != nil]
		s.sys.mu.Unlock()
	}
	if tc == nil {
		return l, nil
	}
	s.serveCert(tc) // setup_tls.go: POST /api/v1/tls may swap it
	s.log.Info("TLS on", "sha256", fpr)
	return tls.NewListener(l, tc), nil
}

// scheme is "https" when the TCP listener has TLS, else "http".
func (s *Server) scheme() string {
	if s.cfg.TLSMode == "auto" || s.cfg.TLSMode == "file" || s.cfg.TLSCert != "" {
		return "https"
	}
	return "http"
}
