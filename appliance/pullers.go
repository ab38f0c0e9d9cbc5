package appliance

// The network pullers the appliance knows, in one place: importing them
// registers their methods (GET /api/v1/methods, `cairn host add --method`).
// This file also holds what the appliance does around a pull that depends
// on the method: trust on first use of the server's identity, the
// connection test and the method-specific pull options.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/dbdump"
	"github.com/cairn-backup/cairn/pullers/ftp"
	_ "github.com/cairn-backup/cairn/pullers/rsync"
	"github.com/cairn-backup/cairn/pullers/sftp"
	"github.com/cairn-backup/cairn/pullers/smb"
	_ "github.com/cairn-backup/cairn/pullers/tar"
)

func init() {
	// Titles for GET /api/v1/methods of the methods registered above.
	methodTitles[dbdump.MethodPostgres] = "PostgreSQL dump (pg_dump)"
	methodTitles[dbdump.MethodMariaDB] = "MariaDB/MySQL dump"
	methodTitles["rsync"] = "rsync (daemon or over SSH)"
}

// pinOption is the source option that holds the pinned server identity
// of a method: an SSH host key, or an FTPS certificate fingerprint.
func pinOption(method string) string {
	switch method {
	case dbdump.MethodPostgres, dbdump.MethodMariaDB:
		return "ssh_host_key"
	case ftp.Method:
		return "tls_fingerprint"
	}
	return "host_key"
}

// seenIdentity is the server identity a puller saw in its last login, as
// its pin option wants it, or "".
func seenIdentity(pl pullers.Puller) string {
	switch p := pl.(type) {
	case interface{ SeenFingerprint() string }:
		return p.SeenFingerprint()
	case interface{ SeenHostKey() string }:
		return p.SeenHostKey()
	}
	return ""
}

// identityFingerprint shows a pinned identity briefly: SHA256:… for an
// SSH key, the value itself otherwise.
func identityFingerprint(v string) string {
	if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(v)); err == nil {
		return ssh.FingerprintSHA256(k)
	}
	return v
}

// pinIdentity stores the identity the puller saw as the source's pin
// when the source had none (trust on first use). It re-reads the source
// so a concurrent edit is not undone, and never replaces a pin: a changed
// identity is refused by the puller itself (permanently) until an admin
// edits the option.
func (s *Server) pinIdentity(ctx context.Context, jc *jobCtx, h *catalog.Host, src *catalog.Source, pl pullers.Puller) {
	key := pinOption(src.Method)
	if strings.TrimSpace(src.Options[key]) != "" {
		return
	}
	seen := seenIdentity(pl)
	if seen == "" {
		return
	}
	srcs, err := s.cat.Sources(ctx, h.ID)
	if err != nil {
		jc.logf("warn", "source %s: could not pin the server identity: %v", src.Name, err)
		return
	}
	for i := range srcs {
		cur := &srcs[i]
		if cur.Name != src.Name || cur.Method != src.Method {
			continue
		}
		if strings.TrimSpace(cur.Options[key]) != "" {
			return
		}
		if cur.Options == nil {
			cur.Options = map[string]string{}
		}
		cur.Options[key] = seen
		if err := s.cat.PutSource(ctx, cur); err != nil {
			jc.logf("warn", "source %s: could not pin the server identity: %v", src.Name, err)
			return
		}
		jc.logf("info", "source %s: trusted on first use: pinned %s %s", src.Name, key, identityFingerprint(seen))
		return
	}
}

// addressMethods are the methods whose Options["host"] defaults to the
// host's address.
var addressMethods = []string{ftp.Method, "rsync", sftp.Method, smb.Method, "tar"}

// pullOptions returns the options a puller gets for src: the stored ones,
// plus appliance defaults: the server to reach is the host's address
// when the source names none, and the database dump spool lives in the
// data dir, not in a small /tmp.
func (s *Server) pullOptions(h *catalog.Host, src *catalog.Source) (map[string]string, error) {
	o := make(map[string]string, len(src.Options)+2)
	for k, v := range src.Options {
		o[k] = v
	}
	if strings.TrimSpace(o["host"]) == "" && slices.Contains(addressMethods, src.Method) {
		o["host"] = h.Address
		if o["host"] == "" {
			o["host"] = h.Name
		}
	}
	switch src.Method {
	case dbdump.MethodPostgres, dbdump.MethodMariaDB:
		if o["spool_dir"] == "" {
			dir := filepath.Join(s.dataDir, "spool")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("spool directory: %w", err)
			}
			o["spool_dir"] = dir
		}
	}
	return o, nil
}

// hostTester is a puller with a connection test: log in, list the source
// root, report the server's identity.
type hostTester interface {
	Test(ctx context.Context, s pullers.Source) (map[string]string, error)
}

// SourceTestBody is the outcome of the connection test of one source.
type SourceTestBody struct {
	Source    string            `json:"source"`
	Method    string            `json:"method"`
	OK        bool              `json:"ok"`
	Supported bool              `json:"supported"` // false: the method has no connection test
	Error     string            `json:"error,omitempty"`
	Identity  map[string]string `json:"identity,omitempty"` // host key fingerprint, server banner, path listed…
	Pinned    string            `json:"pinned,omitempty"`   // the stored pin option's fingerprint, if any
}

// handleHostTest runs the connection test of every source of a host (or
// of ?source=NAME), one after the other.
func (s *Server) handleHostTest(r *http.Request, p *principal) (any, error) {
	ctx := r.Context()
	h, err := s.visibleHost(ctx, p, r.PathValue("host"))
	if err != nil {
		return nil, err
	}
	srcs, err := s.cat.Sources(ctx, h.ID)
	if err != nil {
		return nil, err
	}
	only := r.URL.Query().Get("source")
	accept := r.URL.Query().Get("accept") == "true"
	if accept && p.rank() < roleAdmin {
		return nil, forbidden("only admins may accept a new server identity")
	}
	out := []SourceTestBody{}
	for i := range srcs {
		src := &srcs[i]
		if only != "" && src.Name != only {
			continue
		}
		b := s.testSource(ctx, h, src, accept)
		if accept {
			if err := s.acceptIdentity(ctx, h, src, &b); err != nil {
				return nil, err
			}
			s.log.Info("server identity accepted", "host", h.Name, "source", src.Name, "pinned", b.Pinned, "by", p.Name)
		}
		out = append(out, b)
	}
	if only != "" && len(out) == 0 {
		return nil, notFound("host %s has no source %s", h.Name, only)
	}
	return out, nil
}

// acceptIdentity replaces the pin of src after an admin's test with
// accept: by the identity the test saw (when it succeeded and reports
// one), or else by nothing, so the next backup pins again on first use.
func (s *Server) acceptIdentity(ctx context.Context, h *catalog.Host, src *catalog.Source, b *SourceTestBody) error {
	key := pinOption(src.Method)
	if b.Supported && !b.OK {
		return nil // nothing trustworthy seen: keep the pin
	}
	seen := ""
	if b.OK {
		seen = b.Identity[key]
	}
	if src.Options == nil {
		src.Options = map[string]string{}
	}
	if src.Options[key] == seen {
		return nil
	}
	if seen == "" {
		delete(src.Options, key)
		b.Pinned = ""
	} else {
		src.Options[key] = seen
		b.Pinned = identityFingerprint(seen)
	}
	return s.cat.PutSource(ctx, src)
}

func (s *Server) testSource(ctx context.Context, h *catalog.Host, src *catalog.Source, ignorePin bool) SourceTestBody {
	b := SourceTestBody{Source: src.Name, Method: src.Method}
	if pin := src.Options[pinOption(src.Method)]; pin != "" {
		b.Pinned = identityFingerprint(pin)
	}
	pl, err := pullers.Get(src.Method)
	if err != nil {
		b.Error = err.Error()
		return b
	}
	t, ok := pl.(hostTester)
	if !ok {
		b.Error = fmt.Sprintf("method %s has no connection test; run a backup to check it", src.Method)
		return b
	}
	b.Supported = true
	ps, scrub, err := s.pullerSource(h, src)
	if err != nil {
		b.Error = err.Error()
		return b
	}
	if ignorePin {
		delete(ps.Options, pinOption(src.Method))
	}
	jump, err := jumpFor(pl, ps) // jump.go
	if err != nil {
		b.Error = scrub(err.Error())
		return b
	}
	defer jump.Close()
	tctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	id, err := t.Test(tctx, ps)
	if len(id) > 0 {
		b.Identity = id
	}
	if err != nil {
		b.Error = scrub(err.Error())
		return b
	}
	b.OK = true
	return b
}

// pullerSource is the pullers.Source of a stored source, with its
// credentials opened, and a scrubber for messages that might echo them.
func (s *Server) pullerSource(h *catalog.Host, src *catalog.Source) (pullers.Source, func(string) string, error) {
	secret := map[string]string{}
	if src.Secret != nil {
		var err error
		if secret, err = s.openSecret(src.Secret); err != nil {
			return pullers.Source{}, nil, fmt.Errorf("credentials: %w", err)
		}
	}
	opts, err := s.pullOptions(h, src)
	if err != nil {
		return pullers.Source{}, nil, err
	}
	if secret == nil {
		secret = map[string]string{}
	}
	if err := s.withApplianceKey(src.Method, opts, secret); err != nil {
		return pullers.Source{}, nil, err
	}
	return pullers.Source{Method: src.Method, Name: src.Name, Path: src.Path, Excludes: src.Excludes,
		Options: opts, Secret: secret}, scrubber(secret), nil
}

// applyDirCap gives the pullers that take the names-per-directory cap as
// a field (sftp, smb) the source's max_dir_entries option; ftp and local
// read it themselves.
func applyDirCap(pl pullers.Puller, method string, opts map[string]string) error {
	n, err := maxDirEntries(method, opts)
	if err != nil || n == 0 {
		return err
	}
	switch p := pl.(type) {
	case *sftp.Puller:
		p.MaxEntries = n
	case *smb.Puller:
		p.MaxEntries = n
	}
	return nil
}

// hostRestoreMethods are the methods that can write a snapshot back to
// the host.
var hostRestoreMethods = []string{ftp.Method, sftp.Method, smb.Method}

// hostRestoreResult is what a restore to the host wrote (the job's
// progress result).
type hostRestoreResult struct {
	Method  string   `json:"method"`
	Dest    string   `json:"dest"` // the directory on the host
	Files   int64    `json:"files"`
	Dirs    int64    `json:"dirs"`
	Bytes   int64    `json:"bytes"`
	Errors  []string `json:"errors,omitempty"`
	Skipped []string `json:"skipped,omitempty"` // entries the protocol cannot create
}

// errNoHostRestore says a method cannot restore to the host.
var errNoHostRestore = errors.New("cannot restore to the host")

func checkHostRestoreMethod(method string, inPlace bool) error {
	i := sort.SearchStrings(hostRestoreMethods, method)
	if i == len(hostRestoreMethods) || hostRestoreMethods[i] != method {
		return badRequest("method %s %v (to_host works for %s)", method, errNoHostRestore, strings.Join(hostRestoreMethods, ", "))
	}
	if inPlace && method == ftp.Method {
		return badRequest("method ftp cannot restore in place: it only writes into a new directory")
	}
	return nil
}
