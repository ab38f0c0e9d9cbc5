package backuppc

import (
	"fmt"
	"strings"
)

// HostLine is one host of BackupPC's hosts file.
type HostLine struct {
	Host      string
	DHCP      bool
	User      string
	MoreUsers []string
	Line      int
}

// ParseHosts parses BackupPC's hosts file: "host dhcp user moreUsers"
// per line, # comments, the header line skipped. Lines it cannot read
// are returned as errors with file:line.
func ParseHosts(name string, data []byte) ([]HostLine, []*ParseError, error) {
	if len(data) > MaxFileSize {
		return nil, nil, fmt.Errorf("%s: %d bytes, more than the %d a BackupPC hosts file may have", name, len(data), MaxFileSize)
	}
	var out []HostLine
	var errs []*ParseError
	for i, raw := range strings.Split(string(data), "\n") {
		l := raw
		if j := strings.IndexByte(l, '#'); j >= 0 {
			l = l[:j]
		}
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if f[0] == "host" && len(f) > 1 && f[1] == "dhcp" {
			continue // the header
		}
		h := HostLine{Host: f[0], Line: i + 1}
		if len(f) > 1 {
			switch f[1] {
			case "0":
			case "1":
				h.DHCP = true
			default:
				errs = append(errs, &ParseError{File: name, Line: i + 1, Msg: fmt.Sprintf("dhcp field %q: want 0 or 1", f[1]), Text: snippet([]byte(raw))})
				continue
			}
		}
		if len(f) > 2 {
			h.User = f[2]
		}
		if len(f) > 3 {
			for _, u := range strings.Split(strings.Join(f[3:], ","), ",") {
				if u = strings.TrimSpace(u); u != "" {
					h.MoreUsers = append(h.MoreUsers, u)
				}
			}
		}
		out = append(out, h)
	}
	return out, errs, nil
}
