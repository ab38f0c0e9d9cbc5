package appliance

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The TLS certificate of the web UI and the API, step "HTTPS" of the
// setup wizard (issue #10): GET /api/v1/tls shows which certificate is
// served and which is stored; POST /api/v1/tls either generates a new
// self-signed one or installs an uploaded certificate and key (PEM).
//
// The certificate is stored where `--tls auto` keeps its own,
// DATA/tls/cert.pem and key.pem (system_tls.go), so it is the one served
// from the next start on. When the listener already serves TLS, it is
// swapped in at once: new connections get it (tls.Config.GetCertificate).
// Under `--tls-cert/--tls-key` the files belong to the operator and the
// API refuses to change them.

// TLSStatus is the answer of GET and POST /api/v1/tls.
type TLSStatus struct {
	Mode        string    `json:"mode"`   // off, auto or file
	Active      bool      `json:"active"` // the TCP listener serves TLS now
	Fingerprint string    `json:"fingerprint,omitempty"`
	Subject     string    `json:"subject,omitempty"`
	Names       []string  `json:"names,omitempty"` // DNS names and IP addresses of the certificate
	NotAfter    time.Time `json:"not_after,omitzero"`
	SelfSigned  bool      `json:"self_signed"`
	// Pending: the stored certificate is not the one served yet; it
	// is at the next start (with --tls auto).
	Pending    bool   `json:"pending"`
	Changeable bool   `json:"changeable"`
	Reason     string `json:"reason,omitempty"` // why not changeable
}

// TLSInput is the body of POST /api/v1/tls: generate, or both PEMs.
type TLSInput struct {
	Generate bool   `json:"generate"`
	CertPEM  string `json:"cert_pem"`
	KeyPEM   string `json:"key_pem"`
}

func (s *Server) tlsMode() string {
	switch {
	case s.cfg.TLSMode == "auto" || s.cfg.TLSMode == "file":
		return s.cfg.TLSMode
	case s.cfg.TLSCert != "" || s.cfg.TLSKey != "":
		return "file"
	}
	return "off"
}

func (s *Server) tlsFiles() (cert, key string) {
	d := filepath.Join(s.dataDir, tlsDir)
	return filepath.Join(d, "cert.pem"), filepath.Join(d, "key.pem")
}

// serveCert makes tc serve the certificate of s.tlsCert, which POST
// /api/v1/tls may replace while the listener runs.
func (s *Server) serveCert(tc *tls.Config) {
	c := tc.Certificates[0]
	s.tlsCert.Store(&c)
	tc.Certificates = nil
	tc.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.tlsCert.Load(), nil }
}

func (s *Server) tlsStatus() (*TLSStatus, error) {
	st := &TLSStatus{Mode: s.tlsMode(), Changeable: true}
	if st.Mode == "file" {
		st.Changeable = false
		st.Reason = "the certificate is read from the --tls-cert and --tls-key files; replace them and restart"
	}
	var served string
	if c := s.tlsCert.Load(); c != nil {
		st.Active = true
		served = Fingerprint(c.Certificate[0])
		if err := describeCert(st, c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	if st.Mode == "file" {
		return st, nil
	}
	certFile, _ := s.tlsFiles()
	b, err := os.ReadFile(certFile)
	if os.IsNotExist(err) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", certFile)
	}
	if stored := Fingerprint(blk.Bytes); stored != served {
		st.Pending = true
		if !st.Active {
			if err := describeCert(st, blk.Bytes); err != nil {
				return nil, err
			}
		}
	}
	return st, nil
}

func describeCert(st *TLSStatus, der []byte) error {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("tls: parse certificate: %w", err)
	}
	st.Fingerprint = Fingerprint(der)
	st.Subject = c.Subject.String()
	st.NotAfter = c.NotAfter.UTC()
	st.SelfSigned = string(c.RawIssuer) == string(c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
	st.Names = append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		st.Names = append(st.Names, ip.String())
	}
	return nil
}

func (s *Server) handleTLSGet(r *http.Request, _ *principal) (any, error) {
	return s.tlsStatus()
}

func (s *Server) handleTLSSet(r *http.Request, p *principal) (any, error) {
	var in TLSInput
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	if s.tlsMode() == "file" {
		return nil, &httpError{http.StatusConflict, "tls: the certificate is read from the --tls-cert and --tls-key files; replace them and restart"}
	}
	certPEM, keyPEM := []byte(in.CertPEM), []byte(in.KeyPEM)
	switch {
	case in.Generate && (in.CertPEM != "" || in.KeyPEM != ""):
		return nil, badRequest("tls: give either generate or cert_pem and key_pem, not both")
	case in.Generate:
		tmp, err := os.MkdirTemp(filepath.Join(s.dataDir), ".tls-new-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		c, k := filepath.Join(tmp, "cert.pem"), filepath.Join(tmp, "key.pem")
		if err := ensureSelfSigned(c, k); err != nil {
			return nil, err
		}
		if certPEM, err = os.ReadFile(c); err != nil {
			return nil, err
		}
		if keyPEM, err = os.ReadFile(k); err != nil {
			return nil, err
		}
	case strings.TrimSpace(in.CertPEM) == "":
		return nil, badRequest("tls: cert_pem is empty: paste the certificate (PEM, the server's first, then any intermediates), or set generate")
	case strings.TrimSpace(in.KeyPEM) == "":
		return nil, badRequest("tls: key_pem is empty: paste the private key of the certificate (PEM)")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, badRequest("tls: certificate and key: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, badRequest("tls: certificate: %v", err)
	}
	if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return nil, badRequest("tls: certificate is valid from %s to %s, not now", leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	certFile, keyFile := s.tlsFiles()
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return nil, err
	}
	// The key first: a crash in between leaves a pair that does not
	// match, which the next start reports, rather than a silent mix.
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return nil, err
	}
	fpr := Fingerprint(pair.Certificate[0])
	if s.tlsCert.Load() != nil {
		s.tlsCert.Store(&pair)
		if s.sys != nil {
			s.sys.mu.Lock()
			s.sys.fpr = fpr
			s.sys.mu.Unlock()
		}
	}
	how := map[bool]string{true: "generated", false: "uploaded"}[in.Generate]
	s.log.Info("TLS certificate "+how, "sha256", fpr, "by", p.Name)
	return s.tlsStatus()
}
