package appliance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The appliance image (iso/) runs `cairn serve --appliance`: the system
// endpoints below (disks, update, reboot) exist only then, and answer 404
// in an ordinary `cairn serve`, so nothing outside the appliance can format
// a disk.
//
//   - GET  /api/v1/system             version, data persistence, TLS fingerprint, update state
//   - GET  /api/v1/system/disks       attached disks (system_disks.go)
//   - POST /api/v1/system/disks/use   format a disk as CAIRN-DATA and move the data dir there
//   - POST /api/v1/system/update      upload a binary or ISO as slot B (system_update.go)
//   - POST /api/v1/system/reboot      reboot the appliance (takes updates into use)

// DataLabel is the file system label of the appliance's data disk: later
// boots find the disk by it and mount it on the data dir.
const DataLabel = "CAIRN-DATA"

// sysEnv is the appliance's view of the machine. Tests point it at loop
// devices and stub the reboot.
type sysEnv struct {
	sysfs       string // /sys
	dev         string // /dev
	mountinfo   string // /proc/self/mountinfo
	includeLoop bool   // list loop devices with a backing file (tests)
	reboot      func() error
	consoles    []string // where the console banner goes
	// mu guards the fields below, set while serving.
	mu        sync.Mutex
	moveTo    string // device to move the data dir to at the restart
	restart   context.CancelFunc
	fpr       string // TLS certificate SHA-256, colon hex
	slot      string // "A" or "B"
	urlScheme string // "https" or "http"
	port      string // the TCP port served
}

func defaultSysEnv() *sysEnv {
	return &sysEnv{sysfs: "/sys", dev: "/dev", mountinfo: "/proc/self/mountinfo",
		reboot: func() error { return exec.Command("systemctl", "reboot").Run() }}
}

// RunAppliance is Run for the appliance image: it mounts the data disk
// found by its label, starts an uploaded update (slot B) or rolls it back,
// turns TLS on unless cfg says otherwise, shows the URL, the setup token
// and the TLS fingerprint on the consoles, and re-opens the appliance
// after the data dir moved to a new disk.
func RunAppliance(ctx context.Context, cfg Config, ready func(tcpAddr string)) error {
	env := defaultSysEnv()
	env.consoles = cfg.Consoles
	return runAppliance(ctx, cfg, env, ready, nil)
}

// runAppliance is RunAppliance with the machine injected; opened, when
// set, sees every Server opened (tests).
func runAppliance(ctx context.Context, cfg Config, env *sysEnv, ready func(string), opened func(*Server)) error {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	cfg.DataDir = dir
	if cfg.TLSMode == "" {
		cfg.TLSMode = "auto"
	}
	log := cfg.Logger
	if log == nil {
		log = discardLogger()
		cfg.Logger = log
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	if m := env.dataMount(dir); !m.persistent {
		if dev, err := env.mountByLabel(dir); err != nil {
			log.Error("data disk: mount failed; data lives in RAM until this is fixed", "err", err)
		} else if dev != "" {
			log.Info("data disk mounted", "device", dev, "dir", dir)
		}
	}
	env.slot = "A"
	if os.Getenv(slotEnv) == "B" {
		env.slot = "B"
	} else if err := chooseSlot(dir, log); err != nil {
		return err // only returns when the exec of slot B failed to start
	}
	for {
		s, err := New(ctx, cfg)
		if err != nil {
			return err
		}
		s.sys = env
		if opened != nil {
			opened(s)
		}
		sctx, cancel := context.WithCancel(ctx)
		env.mu.Lock()
		env.restart, env.moveTo = cancel, ""
		env.mu.Unlock()
		health := make(chan error, 1)
		err = s.Serve(sctx, func(addr string) {
			if _, port, err := net.SplitHostPort(addr); err == nil {
				env.mu.Lock()
				env.port = port
				env.mu.Unlock()
			}
			if ready != nil {
				ready(addr)
			}
			go env.consoleLoop(sctx, s, addr)
			if env.slot == "B" {
				go func() { health <- s.confirmSlotB(sctx) }()
			}
		})
		cancel()
		s.Close()
		select {
		case herr := <-health:
			if herr != nil && ctx.Err() == nil {
				return herr
			}
		default:
		}
		if err != nil {
			return err
		}
		env.mu.Lock()
		to := env.moveTo
		env.mu.Unlock()
		if to == "" || ctx.Err() != nil {
			return nil
		}
		log.Info("moving the data dir to the data disk", "device", to, "dir", dir)
		if err := moveDataDir(dir, to); err != nil {
			log.Error("moving the data dir failed; the data stays where it was", "device", to, "err", err)
		}
	}
}

// confirmSlotB is the health check of an update: once the storage check
// passes, slot B is good; if it does not pass within updateHealthTimeout
// the process fails and the next start rolls back to slot A.
func (s *Server) confirmSlotB(ctx context.Context) error {
	deadline := time.Now().Add(updateHealthTimeout)
	for {
		err := s.checkStorage(ctx)
		if err == nil {
			if err := markSlotGood(s.dataDir); err != nil {
				s.log.Error("update: record slot B as good", "err", err)
			} else {
				s.log.Info("update: slot B passed its health check", "version", s.cfg.Version)
			}
			return nil
		}
		if time.Now().After(deadline) {
			s.sys.mu.Lock()
			if s.sys.restart != nil {
				s.sys.restart()
			}
			s.sys.mu.Unlock()
			return fmt.Errorf("update: slot B failed its health check for %s (%v): exiting so the next start rolls back to slot A", updateHealthTimeout, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}
}

// SystemBody is GET /api/v1/system.
type SystemBody struct {
	Version        string     `json:"version"`
	DataDir        string     `json:"data_dir"`
	DataPersistent bool       `json:"data_persistent"`
	DataDevice     string     `json:"data_device,omitempty"`
	TLSFingerprint string     `json:"tls_fingerprint,omitempty"`
	URLs           []string   `json:"urls"`
	Update         UpdateBody `json:"update"`
}

// systemRoutes are the appliance-only endpoints.
func (s *Server) systemRoutes() []route {
	return []route{
		{method: "GET", pattern: "/api/v1/system", minRole: roleAdmin, json: s.handleSystem},
		{method: "GET", pattern: "/api/v1/system/disks", minRole: roleAdmin, json: s.handleDisks},
		{method: "POST", pattern: "/api/v1/system/disks/use", minRole: roleAdmin, raw: s.handleDiskUse},
		{method: "POST", pattern: "/api/v1/system/update", minRole: roleAdmin, raw: s.handleUpdate},
		{method: "POST", pattern: "/api/v1/system/reboot", minRole: roleAdmin, raw: s.handleReboot},
	}
}

// errNotAppliance answers the system endpoints outside the appliance.
var errNotAppliance = &httpError{http.StatusNotFound, "not an appliance: the system endpoints exist only under `cairn serve --appliance`"}

func (s *Server) appliance() error {
	if s.sys == nil {
		return errNotAppliance
	}
	return nil
}

func (s *Server) handleSystem(r *http.Request, _ *principal) (any, error) {
	if err := s.appliance(); err != nil {
		return nil, err
	}
	m := s.sys.dataMount(s.dataDir)
	b := SystemBody{Version: s.cfg.Version, DataDir: s.dataDir, DataPersistent: m.persistent, URLs: s.sys.urls(s.listenPort())}
	if m.persistent {
		b.DataDevice = m.source
	}
	s.sys.mu.Lock()
	b.TLSFingerprint = s.sys.fpr
	slot := s.sys.slot
	s.sys.mu.Unlock()
	b.Update = updateBody(s.dataDir, slot)
	return b, nil
}

func (s *Server) handleReboot(w http.ResponseWriter, r *http.Request, _ *principal) {
	if err := s.appliance(); err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.log.Info("reboot requested", "by", principalOf(r))
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "rebooting"})
	go func() {
		time.Sleep(500 * time.Millisecond) // let the answer go out
		if err := s.sys.reboot(); err != nil {
			s.log.Error("reboot", "err", err)
		}
	}()
}

func principalOf(r *http.Request) string {
	if p, ok := r.Context().Value(principalKey).(*principal); ok && p != nil {
		return p.Name
	}
	return ""
}

// listenPort is the TCP port served ("443" for ":443").
func (s *Server) listenPort() string {
	s.sys.mu.Lock()
	port := s.sys.port
	s.sys.mu.Unlock()
	if port != "" {
		return port
	}
	_, port, err := net.SplitHostPort(s.cfg.Listen)
	if err != nil {
		return ""
	}
	return port
}

// urls are the addresses the appliance answers on: one per non-loopback
// IPv4/IPv6 address of an up interface.
func (e *sysEnv) urls(port string) []string {
	e.mu.Lock()
	scheme := e.urlScheme
	e.mu.Unlock()
	if scheme == "" {
		scheme = "https"
	}
	var out []string
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.IsLinkLocalUnicast() {
				continue
			}
			host := ipn.IP.String()
			if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
				out = append(out, scheme+"://"+hostForURL(host)+"/")
			} else {
				out = append(out, scheme+"://"+net.JoinHostPort(host, port)+"/")
			}
		}
	}
	return out
}

func hostForURL(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

// consoleLoop shows the banner on the consoles and re-shows it when it
// changes (an address from DHCP, setup done, the data disk).
func (e *sysEnv) consoleLoop(ctx context.Context, s *Server, addr string) {
	last := ""
	for {
		text := s.consoleBanner()
		if text != last {
			last = text
			for _, c := range e.consoles {
				if err := writeConsole(c, text); err != nil {
					s.log.Debug("console", "path", c, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(3 * time.Second):
		}
	}
}

func writeConsole(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strings.ReplaceAll(text, "\n", "\r\n"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// consoleBanner is what the boot console shows. The setup token appears
// only until the admin account exists (it is spent then).
func (s *Server) consoleBanner() string {
	var b strings.Builder
	b.WriteString("\n==================== Cairn " + s.cfg.Version + " ====================\n")
	urls := s.sys.urls(s.listenPort())
	if len(urls) == 0 {
		b.WriteString("  No network address yet (waiting for DHCP).\n")
	}
	// The token first: if the setup completes in between, need is false
	// and the spent token is not shown.
	tok := s.ui.SetupToken()
	need, _ := s.ui.NeedsSetup(context.Background())
	for _, u := range urls {
		if need {
			u = strings.TrimRight(u, "/") + "/setup?token=" + url.QueryEscape(tok)
		}
		b.WriteString("  Open:        " + u + "\n")
	}
	if need {
		b.WriteString("  Setup token: " + tok + "\n")
	}
	s.sys.mu.Lock()
	fpr := s.sys.fpr
	s.sys.mu.Unlock()
	if fpr != "" {
		b.WriteString("  TLS certificate SHA-256 fingerprint:\n    " + fpr + "\n")
	}
	if m := s.sys.dataMount(s.dataDir); m.persistent {
		b.WriteString("  Data:        " + m.source + " (persistent)\n")
	} else {
		b.WriteString("  Data:        IN RAM, lost at reboot: choose a data disk in the web setup\n")
	}
	b.WriteString("=========================================================\n")
	return b.String()
}

// moveDataDir copies the (closed) data dir onto the freshly formatted
// device and mounts the device on the data dir. The old copy stays
// underneath the mount (in RAM on the appliance) and is not used again.
func moveDataDir(dir, dev string) error {
	tmp, err := os.MkdirTemp("", "cairn-newdata-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := mountExt4(dev, tmp); err != nil {
		return err
	}
	err = copyTree(dir, tmp)
	if err == nil {
		err = syncFS(tmp)
	}
	if uerr := unmount(tmp); uerr != nil && err == nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("copy the data dir to %s: %w", dev, err)
	}
	return mountExt4(dev, dir)
}

// copyTree copies regular files, directories and symlinks from src into
// dst (sockets and devices are skipped), keeping modes and mtimes.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if rel == "lost+found" {
				return filepath.SkipDir
			}
			if err := os.MkdirAll(target, info.Mode().Perm()); err != nil {
				return err
			}
			return os.Chmod(target, info.Mode().Perm())
		case d.Type()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		case d.Type().IsRegular():
			if err := copyFileMode(p, target, info.Mode().Perm()); err != nil {
				return err
			}
			return os.Chtimes(target, info.ModTime(), info.ModTime())
		}
		return nil
	})
}

func copyFileMode(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := out.ReadFrom(in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
