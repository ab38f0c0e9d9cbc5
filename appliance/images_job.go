package appliance

// Image sources: whole disk images and block devices, stored in the image
// pool (images.go). They are source methods like the others, configured
// per host, run by the backup job (backupSource hands them to
// backupImage):
//
//	image-ssh   Path is a file or block device on the host. The host hashes
//	            it in 4 MiB blocks with stock tools (sh, split, sha256sum,
//	            dd, stat, blockdev) and only changed blocks cross the wire
//	            (images/sshsrc). Options host, port (22), user (root),
//	            host_key (pinned on first use), pre, post; snapshot=lvm
//	            (lvm_vg, lvm_lv, lvm_size: Path is read from the snapshot
//	            device instead) or snapshot=fsfreeze (fsfreeze_mount).
//	            Secret private_key/passphrase or password; none: the
//	            appliance's key. hash_tool: the host's sha256sum, if
//	            elsewhere.
//	image-sftp  Path is a raw image file read over SFTP: every block is read,
//	            only changed blocks are stored. Options and credentials as
//	            image-ssh (no commands).
//	image-smb   Path is a raw image file in an SMB share: options host,
//	            port (445), share, user, domain; Secret password.
//	image-rsync Path is a raw image file pulled with the rsync puller
//	            (daemon or over SSH, its options): only the rsync delta
//	            against the previous version crosses the wire. The file is
//	            kept in the placeholder snapshot too (the next delta's
//	            basis), so it is stored twice: as file-pool chunks and as
//	            image blocks. Prefer image-ssh where the host has sha256sum.
//
// Every source also takes Options jump (through an SSH jump host, as the
// other methods). The image is named after the source: it shows as
// <host>/<time>/images/<source>.img.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	pathpkg "path"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hirochachacha/go-smb2"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/appliance/catalog"
	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/images/sshsrc"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/rsync"
)

// The image source methods.
const (
	MethodImageSSH   = "image-ssh"
	MethodImageSFTP  = "image-sftp"
	MethodImageSMB   = "image-smb"
	MethodImageRsync = "image-rsync"
)

var imageMethods = []string{MethodImageRsync, MethodImageSFTP, MethodImageSMB, MethodImageSSH}

func isImageMethod(m string) bool {
	for _, x := range imageMethods {
		if x == m {
			return true
		}
	}
	return false
}

// imagePuller registers an image method with the pullers registry, so a
// source can name it; the backup job never calls its Pull (backupImage
// runs instead). SeenHostKey serves trust on first use.
type imagePuller struct {
	method string
	seen   string
}

func (p *imagePuller) Pull(ctx context.Context, j *pullers.Job) error {
	return fmt.Errorf("method %s stores block images: it runs in the appliance's image backup, not as a file puller: %w", p.method, pullers.ErrPermanent)
}

func (p *imagePuller) SeenHostKey() string { return p.seen }

// Test is the connection test of an image source: log in (checking the
// pinned host key), stat the image, report the server's identity
// (host_key, host_key_fingerprint), the path and its size. Sources
// without a credential need the appliance's key in s.Secret.
func (p *imagePuller) Test(ctx context.Context, s pullers.Source) (map[string]string, error) {
	if p.method == MethodImageRsync {
		return nil, fmt.Errorf("method %s has no connection test; run a backup to check it", p.method)
	}
	c, err := dialImageOpts(ctx, p.method, s.Options, s.Secret, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out := map[string]string{"path": s.Path}
	if c.seen != "" {
		k, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(c.seen))
		out["host_key"], out["host_key_fingerprint"] = c.seen, ssh.FingerprintSHA256(k)
	}
	var size int64
	switch {
	case c.sftp != nil:
		fi, err := c.sftp.Stat(s.Path)
		if err != nil {
			return out, fmt.Errorf("sftp stat %s: %w", s.Path, err)
		}
		size = fi.Size()
	case c.share != nil:
		fi, err := c.share.Stat(strings.TrimPrefix(strings.ReplaceAll(s.Path, "/", `\`), `\`))
		if err != nil {
			return out, fmt.Errorf("smb stat %s: %w", s.Path, err)
		}
		size = fi.Size()
	default:
		n, _, err := sshsrc.RemoteSize(ctx, c.ssh, s.Path)
		if err != nil {
			return out, err
		}
		size = n
	}
	out["size"] = strconv.FormatInt(size, 10)
	return out, nil
}

func init() {
	for _, m := range imageMethods {
		pullers.Register(m, func() pullers.Puller { return &imagePuller{method: m} })
	}
	addressMethods = append(addressMethods, imageMethods...)
	methodTitles[MethodImageSSH] = "Disk image over SSH (file or block device, changed blocks only)"
	methodTitles[MethodImageSFTP] = "Disk image file over SFTP"
	methodTitles[MethodImageSMB] = "Disk image file on an SMB share"
	methodTitles[MethodImageRsync] = "Disk image file over rsync (delta transfer)"
	pathLabels[MethodImageRsync] = "Image file in the module (or on the host over SSH)"
	methodFields[MethodImageRsync] = methodFields["rsync"]
	pathLabels[MethodImageSSH] = "File or block device on the host"
	pathLabels[MethodImageSFTP] = "Image file on the host"
	pathLabels[MethodImageSMB] = "Image file in the share"
	methodFields[MethodImageSSH] = append([]MethodField{fHost, fStr("user", "SSH user", "").def("root"), fPort("22"), fHostKey, fTimeout("30s"),
		fStr("hash_tool", "Hash tool", "The host's SHA-256 tool printing sha256sum's format.").def("sha256sum").group("advanced")}, sshCreds...)
	methodFields[MethodImageSFTP] = append([]MethodField{fHost, fUser.req(), fPort("22"), fHostKey, fTimeout("30s")}, sshCreds...)
	methodFields[MethodImageSMB] = []MethodField{fHost, fStr("share", "Share", "").req(), fUser.req(), fStr("domain", "Domain", ""),
		fSecret("password", "Password", "").req(), fPort("445"), fTimeout("30s")}
}

// imageHooks let tests change a source in the middle of a pull.
var imageHooks struct {
	reader       func(io.ReaderAt) io.ReaderAt // wraps an image-sftp/smb file
	afterListing func()                        // image-ssh: between listing and fetch
}

// imageName is the image's name in the image pool: unique per host and
// source, within the image-name alphabet.
func imageName(host, source string) string {
	clean := func(s string, n int) string {
		b := []byte(s)
		for i, c := range b {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				b[i] = '_'
			}
		}
		if len(b) > n {
			b = b[:n]
		}
		return string(b)
	}
	h := sha256.Sum256([]byte(host + "\x00" + source))
	return clean(host, 50) + "." + clean(source, 50) + "." + hex.EncodeToString(h[:4])
}

// countConn counts the bytes received on a connection (the wire).
type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// imageConn is the open connection of an image source.
type imageConn struct {
	ssh   *ssh.Client
	sftp  *sftp.Client
	smb   *smb2.Session
	share *smb2.Share
	wire  atomic.Int64
	seen  string // the SSH host key seen, authorized_keys format
}

func (c *imageConn) Close() {
	if c.sftp != nil {
		c.sftp.Close()
	}
	if c.ssh != nil {
		c.ssh.Close()
	}
	if c.share != nil {
		c.share.Umount()
	}
	if c.smb != nil {
		c.smb.Logoff()
	}
}

// dialImage connects to an image source. dial is nil (direct) or a jump
// host's dialer. Without its own credential an SSH source logs in with
// the appliance's key.
func (s *Server) dialImage(ctx context.Context, h *catalog.Host, src *catalog.Source, secret map[string]string,
	dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*imageConn, error) {
	o, err := s.pullOptions(h, src)
	if err != nil {
		return nil, err
	}
	if src.Method != MethodImageSMB && secret["private_key"] == "" && secret["password"] == "" {
		b, _, err := s.applianceKey()
		if err != nil {
			return nil, err
		}
		secret["private_key"] = string(b)
	}
	return dialImageOpts(ctx, src.Method, o, secret, dial)
}

// dialImageOpts connects with a source's options and credentials.
func dialImageOpts(ctx context.Context, method string, o, secret map[string]string,
	dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*imageConn, error) {
	var err error
	timeout := 30 * time.Second
	if v := o["timeout"]; v != "" {
		if timeout, err = time.ParseDuration(v); err != nil || timeout <= 0 {
			return nil, permanent{fmt.Errorf("option timeout %q: want a Go duration", v)}
		}
	}
	port := o["port"]
	if port == "" {
		port = map[bool]string{true: "445", false: "22"}[method == MethodImageSMB]
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return nil, permanent{fmt.Errorf("option port %q: want 1–65535", port)}
	}
	addr := net.JoinHostPort(o["host"], port)
	if dial == nil {
		d := &net.Dialer{Timeout: timeout}
		dial = d.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raw, err := dial(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	c := &imageConn{}
	conn := countConn{Conn: raw, n: &c.wire}
	if method == MethodImageSMB {
		if o["share"] == "" || o["user"] == "" {
			raw.Close()
			return nil, permanent{errors.New("options share and user are required")}
		}
		raw.SetDeadline(time.Now().Add(timeout))
		d := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: o["user"], Password: secret["password"], Domain: o["domain"]}}
		sess, err := d.DialContext(ctx, conn)
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("smb %s: login: %w", addr, err)
		}
		raw.SetDeadline(time.Time{})
		c.smb = sess
		if c.share, err = sess.Mount(o["share"]); err != nil {
			c.Close()
			return nil, fmt.Errorf("smb %s: share %s: %w", addr, o["share"], err)
		}
		return c, nil
	}
	user := o["user"]
	if user == "" {
		if method == MethodImageSFTP {
			raw.Close()
			return nil, permanent{errors.New("option user is required")}
		}
		user = "root"
	}
	auth, err := pullers.SSHAuth(secret["private_key"], secret["passphrase"], secret["password"], "private_key", "password")
	if err != nil {
		raw.Close()
		return nil, err
	}
	var pinned ssh.PublicKey
	k := strings.TrimSpace(o["host_key"])
	if k == "" {
		// Commands run on this connection: the key the host's commands
		// are pinned to (required with them) pins it too.
		k = strings.TrimSpace(o["ssh_host_key"])
	}
	if k != "" {
		if pinned, _, _, _, err = ssh.ParseAuthorizedKey([]byte(k)); err != nil {
			raw.Close()
			return nil, permanent{fmt.Errorf("option host_key: %w", err)}
		}
	}
	cfg := &ssh.ClientConfig{User: user, Auth: auth, Timeout: timeout,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			c.seen = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
			if pinned != nil && string(pinned.Marshal()) != string(key.Marshal()) {
				return permanent{fmt.Errorf("host key changed: pinned %s, the server has %s (an admin must accept the new key)",
					ssh.FingerprintSHA256(pinned), ssh.FingerprintSHA256(key))}
			}
			return nil
		}}
	if pinned != nil {
		cfg.HostKeyAlgorithms = []string{pinned.Type()}
		if pinned.Type() == ssh.KeyAlgoRSA {
			cfg.HostKeyAlgorithms = []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
		}
	}
	raw.SetDeadline(time.Now().Add(timeout))
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		raw.Close()
		var pe permanent
		if errors.As(err, &pe) {
			return nil, pe
		}
		return nil, fmt.Errorf("ssh %s@%s: %w", user, addr, err)
	}
	raw.SetDeadline(time.Time{})
	c.ssh = ssh.NewClient(sc, chans, reqs)
	if method == MethodImageSFTP {
		if c.sftp, err = sftp.NewClient(c.ssh, sftp.UseConcurrentReads(true)); err != nil {
			c.Close()
			return nil, fmt.Errorf("sftp %s: %w", addr, err)
		}
	}
	return c, nil
}

// imageSnapshot is what an image-ssh source runs around its pull for
// Options snapshot: lvm reads a snapshot LV's device (not mounted);
// fsfreeze freezes a file system on the device.
func imageSnapshot(src *catalog.Source, jobID int64) (*snapshotPlan, error) {
	o := src.Options
	name := fmt.Sprintf("cairn-%d-%d", jobID, src.ID)
	switch o["snapshot"] {
	case "":
		return nil, nil
	case "lvm":
		vg, lv, size := o["lvm_vg"], o["lvm_lv"], o["lvm_size"]
		for opt, v := range map[string]string{"lvm_vg": vg, "lvm_lv": lv} {
			if !lvmNameRE.MatchString(v) || v == "." || v == ".." {
				return nil, fmt.Errorf("snapshot: option %s %q: want an LVM name", opt, v)
			}
		}
		if !lvmSizeRE.MatchString(size) {
			return nil, fmt.Errorf("snapshot: option lvm_size %q: want a size such as 2G", size)
		}
		dev := "/dev/mapper/" + strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(name, "-", "--")
		return &snapshotPlan{kind: "lvm", path: dev, created: vg + "/" + name,
			create: "lvcreate -q -s -n " + shq(name) + " -L " + shq(size) + " " + shq(vg+"/"+lv),
			remove: "lvremove -q -f " + shq(vg+"/"+name)}, nil
	case "fsfreeze":
		mnt := o["fsfreeze_mount"]
		if err := checkSnapPath("fsfreeze_mount", mnt); err != nil {
			return nil, err
		}
		if mnt == "/" {
			return nil, fmt.Errorf("snapshot: fsfreeze_mount: never the root filesystem (the SSH login to thaw it would hang)")
		}
		return &snapshotPlan{kind: "fsfreeze", path: src.Path, created: "frozen " + mnt,
			create: "fsfreeze -f " + shq(mnt), remove: "fsfreeze -u " + shq(mnt)}, nil
	}
	return nil, fmt.Errorf("snapshot %q: image sources take lvm or fsfreeze", o["snapshot"])
}

// runRemote runs a command on the host and returns an error quoting its
// stderr on failure.
func runRemote(ctx context.Context, c *ssh.Client, cmd string) error {
	sess, err := c.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	var stderr strings.Builder
	sess.Stderr = &stderr
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	if err := sess.Run(cmd); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		return fmt.Errorf("%w: %s", err, msg)
	}
	return nil
}

// imagePrev is the basis of a new version: the image version of the
// source's last snapshot, if it still reads.
func (s *Server) imagePrev(ctx context.Context, jc *jobCtx, store *images.Store, h *catalog.Host, src *catalog.Source, name string) *images.Manifest {
	last, err := s.cat.LastSnapshot(ctx, h.Name, src.Name, true)
	if err != nil {
		return nil
	}
	pm, err := s.pool.Snapshot(ctx, last.ID)
	if err != nil {
		return nil
	}
	iname, id, ok := images.Placeholder(pm)
	if !ok || iname != name {
		return nil
	}
	m, err := store.Load(ctx, iname, id)
	if err != nil {
		jc.logf("warn", "source %s: previous image version %s unreadable, storing a full version: %v", src.Name, id, err)
		return nil
	}
	return m
}

// imageOutcome is what one image pull did.
type imageOutcome struct {
	m       *images.Manifest
	stats   images.Stats
	fetched int64 // blocks transferred (image-ssh)
}

// backupImage pulls an image source into a new image version and its
// placeholder snapshot. A failed pull commits nothing.
func (s *Server) backupImage(ctx context.Context, jc *jobCtx, h *catalog.Host, src *catalog.Source) (*pool.Manifest, error) {
	start := s.now()
	fail := func(err error) (*pool.Manifest, error) {
		msg := fmt.Sprintf("source %s: %v", src.Name, err)
		if ctx.Err() == nil {
			s.cat.PutBackupStatus(context.WithoutCancel(ctx), &catalog.BackupStatus{Host: h.Name, Source: src.Name,
				Status: "failed", Error: msg, Attempt: s.now(), Duration: s.now().Sub(start)})
			jc.logf("error", "%s", msg)
		}
		if errors.Is(err, pullers.ErrPermanent) {
			return nil, permanent{errors.New(msg)}
		}
		return nil, errors.New(msg)
	}
	secret := map[string]string{}
	if src.Secret != nil {
		var err error
		if secret, err = s.openSecret(src.Secret); err != nil {
			return fail(fmt.Errorf("credentials: %w", err))
		}
		if secret == nil {
			secret = map[string]string{}
		}
	}
	scrub := scrubber(secret)
	if !strings.HasPrefix(src.Path, "/") && (src.Method == MethodImageSSH || src.Method == MethodImageSFTP) {
		return fail(permanent{fmt.Errorf("path %q: want an absolute path on the host", src.Path)})
	}
	snap, err := imageSnapshot(src, jc.job.ID)
	if err != nil {
		return fail(permanent{err})
	}
	if src.Method != MethodImageSSH && (snap != nil || src.Options["pre"] != "" || src.Options["post"] != "") {
		return fail(permanent{fmt.Errorf("method %s runs no commands: use image-ssh for pre/post commands and snapshots", src.Method)})
	}
	store, err := s.imageStore(ctx, true)
	if err != nil {
		return fail(err)
	}
	jump, err := newJump(src.Options, secret)
	if err != nil {
		return fail(permanent{err})
	}
	defer jump.Close()
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if jump != nil {
		dial = jump.Dial
	}
	jc.logf("info", "source %s: %s %s", src.Name, src.Method, src.Path)
	if src.Method == MethodImageRsync {
		return s.backupImageRsync(ctx, jc, h, src, secret, store, jump, start, fail)
	}
	c, err := s.dialImage(ctx, h, src, secret, dial)
	if err != nil {
		return fail(keepPermanent(err, errors.New(scrub(err.Error()))))
	}
	defer c.Close()

	name := imageName(h.Name, src.Name)
	prev := s.imagePrev(ctx, jc, store, h, src, name)
	labels := map[string]string{"job": strconv.FormatInt(jc.job.ID, 10), "method": src.Method, images.LabelImage: name}
	// The placeholder's labels are completed below, before Finish (the
	// writer keeps this map).
	w, err := s.pool.NewWriter(context.WithoutCancel(ctx), pool.SnapshotMeta{Host: h.Name, Source: src.Name, Start: start, Labels: labels})
	if err != nil {
		return fail(err)
	}
	vo := images.VersionOptions{Host: h.Name, Source: src.Method + ":" + src.Path, Snapshot: w.ID(), Time: start,
		Prev: prev, HostHash: images.HashSHA256}
	var out imageOutcome
	switch src.Method {
	case MethodImageSSH:
		out, err = s.pullImageSSH(ctx, jc, c, store, name, src, snap, vo, scrub)
	default:
		out, err = s.pullImageFile(ctx, jc, c, store, name, src, vo)
	}
	if err != nil {
		w.Abort()
		return fail(keepPermanent(err, errors.New(scrub(err.Error()))))
	}
	if src.Options["host_key"] == "" && c.seen != "" {
		s.pinIdentity(ctx, jc, h, src, &imagePuller{method: src.Method, seen: c.seen})
	}
	labels[images.LabelVersion] = out.m.ID
	labels[images.LabelSize] = strconv.FormatInt(out.m.Size, 10)
	// The placeholder's tree is an empty directory.
	if err := w.Add(ctx, ".", pool.Entry{Type: pool.TypeDir, Mode: 0o555, ModTime: start.UnixNano()}, nil); err != nil {
		w.Abort()
		store.Delete(context.WithoutCancel(ctx), name, out.m.ID)
		return fail(err)
	}
	pm, err := w.Finish(ctx)
	if err != nil {
		store.Delete(context.WithoutCancel(ctx), name, out.m.ID)
		return fail(err)
	}
	row := manifestRow(pm, jc.job.ID)
	row.Files, row.Bytes, row.BytesNew = 1, out.m.Size, out.stats.StoredBytes
	if err := s.cat.PutSnapshot(ctx, row); err != nil {
		return fail(err)
	}
	s.events.publish(Event{Type: "snapshot", JobID: jc.job.ID, Host: h.Name, Data: snapshotBody(row)})
	s.invalidateImagesUsage()
	s.cat.PutBackupStatus(ctx, &catalog.BackupStatus{Host: h.Name, Source: src.Name, Status: pm.Status,
		Attempt: pm.End, LastSuccess: pm.End, Duration: pm.End.Sub(pm.Start), Files: 1, Bytes: out.m.Size, BytesNew: out.stats.StoredBytes})
	basis := "none"
	if prev != nil {
		basis = prev.ID
	}
	jc.logf("info", "source %s: image %s version %s (basis %s): %d bytes, %d blocks (%d holes, %d unchanged, %d transferred), %d stored (%d bytes), %d bytes over the wire",
		src.Name, name, out.m.ID, basis, out.m.Size, out.stats.Blocks, out.stats.ZeroBlocks, out.stats.Skipped, out.fetched, out.stats.Stored, out.stats.StoredBytes, c.wire.Load())
	pm.Files, pm.Bytes = 1, out.m.Size
	return pm, nil
}

// pullImageSSH runs the differential pull, with the pre-command and the
// snapshot before it and their undoing after.
func (s *Server) pullImageSSH(ctx context.Context, jc *jobCtx, c *imageConn, store *images.Store, name string, src *catalog.Source,
	snap *snapshotPlan, vo images.VersionOptions, scrub func(string) string) (imageOutcome, error) {
	path := src.Path
	hookCtx := func() (context.Context, context.CancelFunc) {
		d := defaultHookTimeout
		if v, err := time.ParseDuration(src.Options["hook_timeout"]); err == nil && v > 0 {
			d = v
		}
		return context.WithTimeout(context.WithoutCancel(ctx), d)
	}
	hook := func(what, cmd string) error {
		hctx, cancel := hookCtx()
		defer cancel()
		if err := runRemote(hctx, c.ssh, cmd); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if post := src.Options["post"]; post != "" {
		defer func() {
			if err := hook("post-command", post); err != nil {
				jc.logf("warn", "source %s: %s", src.Name, scrub(err.Error()))
			}
		}()
	}
	if pre := src.Options["pre"]; pre != "" {
		jc.logf("info", "source %s: pre-command", src.Name)
		if err := hook("pre-command", pre); err != nil {
			return imageOutcome{}, err
		}
	}
	if snap != nil {
		defer func() {
			if err := hook("snapshot removal", snap.remove); err != nil {
				jc.logf("warn", "source %s: %s snapshot %s: %s", src.Name, snap.kind, snap.created, scrub(err.Error()))
			} else {
				jc.logf("info", "source %s: %s snapshot %s removed", src.Name, snap.kind, snap.created)
			}
		}()
		if err := hook("snapshot", snap.create); err != nil {
			return imageOutcome{}, err
		}
		jc.logf("info", "source %s: %s snapshot %s; reading %s", src.Name, snap.kind, snap.created, snap.path)
		path = snap.path
	}
	jc.update(func(p *Progress) { p.Phase, p.Path = "hashing on the host", path })
	m, rep, err := sshsrc.Pull(ctx, c.ssh, store, name, sshsrc.Options{Path: path, Version: vo,
		HashTool: src.Options["hash_tool"], AfterListing: imageHooks.afterListing,
		Progress: func(fetched, toFetch, data int64) {
			jc.update(func(p *Progress) {
				p.Phase, p.Bytes, p.BytesTotal = "fetching changed blocks", data, toFetch*images.BlockSize
			})
		}})
	if err != nil {
		return imageOutcome{}, err
	}
	if rep.ChangedDuringRead > 0 {
		jc.logf("warn", "source %s: %d blocks changed on the host while they were read (a live source; use a snapshot)", src.Name, rep.ChangedDuringRead)
	}
	return imageOutcome{m: m, stats: rep.Stats, fetched: rep.Fetched}, nil
}

// pullImageFile reads a raw image over SFTP or SMB, every block, storing
// only the changed ones. A size or modification-time change between the
// start and the end of the read fails the pull (the version is removed).
func (s *Server) pullImageFile(ctx context.Context, jc *jobCtx, c *imageConn, store *images.Store, name string, src *catalog.Source,
	vo images.VersionOptions) (imageOutcome, error) {
	var (
		r    io.ReaderAt
		stat func() (int64, time.Time, error)
	)
	switch {
	case c.sftp != nil:
		f, err := c.sftp.Open(src.Path)
		if err != nil {
			return imageOutcome{}, fmt.Errorf("sftp open %s: %w", src.Path, err)
		}
		defer f.Close()
		r = f
		stat = func() (int64, time.Time, error) {
			fi, err := f.Stat()
			if err != nil {
				return 0, time.Time{}, err
			}
			if !fi.Mode().IsRegular() {
				return 0, time.Time{}, fmt.Errorf("%s is not a regular file", src.Path)
			}
			return fi.Size(), fi.ModTime(), nil
		}
	default:
		p := strings.TrimPrefix(strings.ReplaceAll(src.Path, "/", `\`), `\`)
		f, err := c.share.Open(p)
		if err != nil {
			return imageOutcome{}, fmt.Errorf("smb open %s: %w", src.Path, err)
		}
		defer f.Close()
		r = f
		stat = func() (int64, time.Time, error) {
			fi, err := f.Stat()
			if err != nil {
				return 0, time.Time{}, err
			}
			if !fi.Mode().IsRegular() {
				return 0, time.Time{}, fmt.Errorf("%s is not a regular file", src.Path)
			}
			return fi.Size(), fi.ModTime(), nil
		}
	}
	size, mtime, err := stat()
	if err != nil {
		return imageOutcome{}, fmt.Errorf("stat %s: %w", src.Path, err)
	}
	if imageHooks.reader != nil {
		r = imageHooks.reader(r)
	}
	jc.update(func(p *Progress) { p.Phase, p.Path, p.BytesTotal = "reading the image", src.Path, size })
	m, st, err := store.IngestReaderAt(ctx, name, r, size, images.IngestOptions{VersionOptions: vo,
		Progress: func(st images.Stats) { jc.update(func(p *Progress) { p.Bytes = st.BytesRead }) }})
	if err != nil {
		return imageOutcome{}, err
	}
	size2, mtime2, err := stat()
	if err == nil && (size2 != size || !mtime2.Equal(mtime)) {
		err = fmt.Errorf("%s: size %d→%d, modified %s→%s: %w", src.Path, size, size2,
			mtime.UTC().Format(time.RFC3339Nano), mtime2.UTC().Format(time.RFC3339Nano), images.ErrSourceChanged)
	}
	if err != nil {
		store.Delete(context.WithoutCancel(ctx), name, m.ID)
		return imageOutcome{}, err
	}
	return imageOutcome{m: m, stats: st}, nil
}

// onlyFile returns rsync exclude patterns that exclude every top-level
// entry of the transfer root except name (the puller sends excludes
// only): names shorter or longer than name, and names of its length that
// differ in some position. name must be plain: letters, digits and
// ._-+,=@ (no wildcard or class characters).
func onlyFile(name string) ([]string, error) {
	if name == "" || len(name) > 200 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+,=@") != "" {
		return nil, fmt.Errorf("image file name %q: want letters, digits and ._-+,=@ for an rsync pull", name)
	}
	var out []string
	for k := 1; k < len(name); k++ {
		out = append(out, "/"+strings.Repeat("?", k))
	}
	out = append(out, "/"+strings.Repeat("?", len(name)+1)+"*")
	for i := range len(name) {
		out = append(out, "/"+strings.Repeat("?", i)+"[!"+name[i:i+1]+"]"+strings.Repeat("?", len(name)-1-i))
	}
	return out, nil
}

// rsyncSink takes the one image file of an rsync pull into the
// placeholder snapshot.
type rsyncSink struct {
	w     *pool.Writer
	jc    *jobCtx
	name  string
	found *pool.Entry
	other []string
}

func (k *rsyncSink) Add(ctx context.Context, path string, e pool.Entry, r io.Reader) error {
	switch {
	case path == ".":
	case path == k.name && e.Type == pool.TypeFile:
		ec := e
		k.found = &ec
	default:
		k.other = append(k.other, path)
		return nil // never stored
	}
	return k.w.Add(ctx, path, e, r)
}

func (k *rsyncSink) RecordError(path string, err error) {
	k.w.RecordError(path, err)
	k.jc.logf("warn", "%s: %v", path, err)
}

// backupImageRsync pulls the image file with the rsync puller into the
// placeholder snapshot (the previous one is the delta basis), then
// builds the image version from the stored file.
func (s *Server) backupImageRsync(ctx context.Context, jc *jobCtx, h *catalog.Host, src *catalog.Source, secret map[string]string,
	store *images.Store, jump *jumpHost, start time.Time, fail func(error) (*pool.Manifest, error)) (*pool.Manifest, error) {
	scrub := scrubber(secret)
	dir, file := pathpkg.Split(pathpkg.Clean("/" + src.Path))
	excludes, err := onlyFile(file)
	if err != nil {
		return fail(permanent{err})
	}
	pl := rsync.New()
	if err := useJump(pl, "rsync", "", jump); err != nil {
		return fail(err)
	}
	opts, err := s.pullOptions(h, src)
	if err != nil {
		return fail(err)
	}
	if err := s.withApplianceKey("rsync", opts, secret); err != nil {
		return fail(err)
	}
	// An image changes in place, often keeping its size; its mtime (whole
	// seconds in rsync 27) is no proof: always a delta against the basis.
	opts["full"] = "true"
	name := imageName(h.Name, src.Name)
	prev := s.imagePrev(ctx, jc, store, h, src, name)
	var basis pullers.Previous
	if last, err := s.cat.LastSnapshot(ctx, h.Name, src.Name, true); err == nil {
		if root, err := pool.ParseDigest(last.Root); err == nil {
			basis = s.pool.NewTreeLookup(root)
		}
	}
	id := images.NewVersionID(start)
	labels := map[string]string{"job": strconv.FormatInt(jc.job.ID, 10), "method": src.Method,
		images.LabelImage: name, images.LabelVersion: id}
	w, err := s.pool.NewWriter(context.WithoutCancel(ctx), pool.SnapshotMeta{Host: h.Name, Source: src.Name, Start: start, Labels: labels})
	if err != nil {
		return fail(err)
	}
	sink := &rsyncSink{w: w, jc: jc, name: file}
	jc.update(func(p *Progress) { p.Phase, p.Path = "rsync delta", src.Path })
	err = pl.Pull(ctx, &pullers.Job{Host: h.Name, Sink: sink, Previous: basis,
		Source:   pullers.Source{Method: "rsync", Name: src.Name, Path: dir, Excludes: excludes, Options: opts, Secret: secret},
		Progress: func(pp pullers.Progress) { jc.update(func(p *Progress) { p.Bytes = pp.Bytes }) }})
	if err == nil && sink.found == nil {
		err = fmt.Errorf("rsync: %s not found on the host (or not a regular file)", src.Path)
	}
	if err == nil && len(sink.other) > 0 {
		err = fmt.Errorf("rsync: the sender sent other entries (%s): refusing", strings.Join(sink.other[:min(3, len(sink.other))], ", "))
	}
	if err != nil {
		w.Abort()
		return fail(keepPermanent(err, errors.New(scrub(err.Error()))))
	}
	if src.Options["host_key"] == "" && pl.SeenHostKey() != "" {
		s.pinIdentity(ctx, jc, h, src, pl)
	}
	size := sink.found.Size
	labels[images.LabelSize] = strconv.FormatInt(size, 10)
	pm, err := w.Finish(ctx)
	if err != nil {
		return fail(err)
	}
	// The version, from the file just stored; without it the placeholder
	// goes too.
	drop := func(err error) (*pool.Manifest, error) {
		s.pool.DeleteSnapshot(context.WithoutCancel(ctx), pm.ID)
		return fail(err)
	}
	e, err := s.pool.Lookup(ctx, pm.Root, file)
	if err != nil {
		return drop(err)
	}
	cr, err := s.pool.OpenContent(ctx, &e)
	if err != nil {
		return drop(err)
	}
	jc.update(func(p *Progress) { p.Phase = "storing image blocks" })
	m, st, err := store.IngestReaderAt(ctx, name, cr, size, images.IngestOptions{VersionOptions: images.VersionOptions{
		Host: h.Name, Source: src.Method + ":" + src.Path, Snapshot: pm.ID, Time: start, Prev: prev, HostHash: images.HashSHA256, ID: id}})
	if err != nil {
		return drop(err)
	}
	row := manifestRow(pm, jc.job.ID)
	row.Files, row.Bytes, row.BytesNew = 1, m.Size, st.StoredBytes+pm.BytesNew
	if err := s.cat.PutSnapshot(ctx, row); err != nil {
		return fail(err)
	}
	s.events.publish(Event{Type: "snapshot", JobID: jc.job.ID, Host: h.Name, Data: snapshotBody(row)})
	s.invalidateImagesUsage()
	s.cat.PutBackupStatus(ctx, &catalog.BackupStatus{Host: h.Name, Source: src.Name, Status: pm.Status,
		Attempt: pm.End, LastSuccess: pm.End, Duration: s.now().Sub(start), Files: 1, Bytes: m.Size, BytesNew: row.BytesNew})
	jc.logf("info", "source %s: image %s version %s: %d bytes, %d blocks (%d holes, %d unchanged), %d stored (%d bytes; %d in the file pool as the rsync basis), %d bytes over the wire",
		src.Name, name, m.ID, m.Size, st.Blocks, st.ZeroBlocks, st.Skipped, st.Stored, st.StoredBytes, pm.BytesNew, pl.BytesReceived())
	pm.Files, pm.Bytes = 1, m.Size
	return pm, nil
}
