package appliance

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/pullers/rsync"
)

// SettingApplianceAddress is the catalog setting with the address (or
// comma-separated addresses/patterns) the appliance connects to hosts
// from; onboarding snippets restrict the appliance's key to it.
const SettingApplianceAddress = "appliance.address"

// OnboardBody is what GET /api/v1/hosts/{host}/onboard returns: a POSIX
// shell snippet for the host's admin that grants the appliance's key
// narrow access, and what went into it.
type OnboardBody struct {
	Host      string `json:"host"`
	User      string `json:"user"`
	From      string `json:"from"`
	PublicKey string `json:"public_key"`
	KeyLine   string `json:"key_line"` // the authorized_keys line
	Script    string `json:"script"`
}

// onboardRequest are the knobs of an onboarding snippet.
type onboardRequest struct {
	User       string // login user on the host
	CreateUser bool   // the snippet creates User if missing
	From       string // from= pattern list
	RsyncPath  string // non-empty: force `rrsync -ro RsyncPath`
}

var (
	onboardUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	onboardFromRE = regexp.MustCompile(`^[0-9A-Za-z.:*?/!_-]+(,[0-9A-Za-z.:*?/!_-]+)*$`)
	// rsyncPathRE keeps the forced command free of anything sshd or the
	// shell would interpret: quotes, spaces, backslashes, `$`.
	rsyncPathRE = regexp.MustCompile(`^/[0-9A-Za-z._/+@%=,-]*$`)
)

// onboardScript builds the authorized_keys line and the shell snippet
// that installs it. The snippet is idempotent: it never adds the key a
// second time. It honours CAIRN_AUTHORIZED_KEYS (a file to use instead of
// ~USER/.ssh/authorized_keys), for hosts with a non-standard
// AuthorizedKeysFile.
func onboardScript(host string, pub string, r onboardRequest) (keyLine, script string, err error) {
	if !onboardUserRE.MatchString(r.User) {
		return "", "", badRequest("onboard %s: bad user name %q", host, r.User)
	}
	if !onboardFromRE.MatchString(r.From) {
		return "", "", badRequest("onboard %s: bad from address %q (want addresses or patterns, comma-separated)", host, r.From)
	}
	f := strings.Fields(pub)
	if len(f) < 2 {
		return "", "", fmt.Errorf("onboard %s: bad appliance public key", host)
	}
	key := f[0] + " " + f[1]
	opts := []string{`from="` + r.From + `"`}
	if r.RsyncPath != "" {
		if !rsyncPathRE.MatchString(r.RsyncPath) {
			return "", "", badRequest("onboard %s: rsync path %q: want an absolute path without spaces or quotes", host, r.RsyncPath)
		}
		opts = append(opts, `command="rrsync -ro `+r.RsyncPath+`"`)
	}
	opts = append(opts, "no-pty", "no-port-forwarding", "no-X11-forwarding", "no-agent-forwarding")
	keyLine = strings.Join(opts, ",") + " " + key + " cairn-appliance"

	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# Grant the cairn backup appliance read access to %s as user %s.\n", host, r.User)
	b.WriteString("# Run as root on the host. Safe to run again: the key is added once.\n")
	b.WriteString("set -eu\n")
	fmt.Fprintf(&b, "u=%s\n", r.User)
	fmt.Fprintf(&b, "key=%s\n", shQuote(key))
	fmt.Fprintf(&b, "line=%s\n", shQuote(keyLine))
	if r.CreateUser {
		b.WriteString("id \"$u\" >/dev/null 2>&1 || useradd -m -s /bin/sh \"$u\"\n")
	}
	b.WriteString(`home=$(getent passwd "$u" | cut -d: -f6)
[ -n "$home" ] || { echo "no user $u on this host" >&2; exit 1; }
ak=${CAIRN_AUTHORIZED_KEYS:-$home/.ssh/authorized_keys}
d=$(dirname "$ak")
if [ ! -d "$d" ]; then mkdir -p "$d"; chmod 700 "$d"; chown "$u": "$d"; fi
if [ ! -f "$ak" ]; then : > "$ak"; chmod 600 "$ak"; chown "$u": "$ak"; fi
if grep -qF "$key" "$ak"; then
	echo "cairn: the appliance key is already in $ak"
else
	printf '%s\n' "$line" >> "$ak"
	echo "cairn: added the appliance key to $ak"
fi
`)
	if r.RsyncPath != "" {
		b.WriteString("command -v rrsync >/dev/null 2>&1 || echo \"cairn: warning: rrsync is not in PATH (Debian: /usr/bin/rrsync from the rsync package)\" >&2\n")
	}
	return keyLine, b.String(), nil
}

// shQuote quotes s for a POSIX shell.
func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// onboardFrom decides the from= restriction: the request's, the
// setting's, or the appliance's address on the request's connection.
func (s *Server) onboardFrom(ctx context.Context, r *http.Request) (string, error) {
	if f := strings.TrimSpace(r.URL.Query().Get("from")); f != "" {
		return f, nil
	}
	if v, ok, err := s.cat.Setting(ctx, SettingApplianceAddress); err != nil {
		return "", err
	} else if ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), nil
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if h, _, err := net.SplitHostPort(a.String()); err == nil {
			if ip := net.ParseIP(h); ip != nil && !ip.IsLoopback() && !ip.IsUnspecified() {
				return ip.String(), nil
			}
		}
	}
	return "", badRequest("onboard: cannot tell the appliance's address as the host sees it; give from=ADDRESS (cairn host onboard --from) or set %s", SettingApplianceAddress)
}

// handleHostOnboard serves GET /api/v1/hosts/{host}/onboard?user=&create_user=&rsync=&from=.
func (s *Server) handleHostOnboard(r *http.Request, p *principal) (any, error) {
	ctx := r.Context()
	h, err := s.visibleHost(ctx, p, r.PathValue("host"))
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	req := onboardRequest{User: q.Get("user"), CreateUser: q.Get("create_user") == "true"}
	if req.User == "" {
		req.User = "backup"
	}
	if req.From, err = s.onboardFrom(ctx, r); err != nil {
		return nil, err
	}
	if q.Get("rsync") == "true" {
		if req.RsyncPath, err = s.onboardRsyncPath(ctx, h, q.Get("path")); err != nil {
			return nil, err
		}
	}
	_, pub, err := s.applianceKey()
	if err != nil {
		return nil, err
	}
	pubLine := strings.TrimSpace(string(marshalAuthorizedKey(pub)))
	line, script, err := onboardScript(h.Name, pubLine, req)
	if err != nil {
		return nil, err
	}
	return &OnboardBody{Host: h.Name, User: req.User, From: req.From, PublicKey: pubLine, KeyLine: line, Script: script}, nil
}

// onboardRsyncPath is the directory rrsync confines the key to: the
// given one, or the path of the host's rsync-over-ssh source, or "/" when
// it has several.
func (s *Server) onboardRsyncPath(ctx context.Context, h *catalog.Host, given string) (string, error) {
	if given != "" {
		return given, nil
	}
	srcs, err := s.cat.Sources(ctx, h.ID)
	if err != nil {
		return "", err
	}
	var paths []string
	for _, src := range srcs {
		if src.Method == rsync.Method && src.Options["transport"] == "ssh" && src.Path != "" {
			paths = append(paths, src.Path)
		}
	}
	if len(paths) == 1 {
		return paths[0], nil
	}
	return "/", nil
}
