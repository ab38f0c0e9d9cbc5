package appliance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// rclone targets. The imported rclone.conf never touches the disk: its
// sections are handed to Debian's rclone as RCLONE_CONFIG_<REMOTE>_<KEY>
// environment variables, and rclone serves the remote over WebDAV on a
// loopback port with a random user and password for this one run. Cairn
// talks to it with the small WebDAV client below, so any remote rclone
// knows (B2, Azure, Google Drive, SMB, WebDAV, …) is a target without
// code of ours for it.

// rcloneBinary is the rclone executable (PATH lookup).
var rcloneBinary = "rclone"

// parseRcloneConf reads an rclone.conf: [remote] sections of key = value
// lines. It returns remote → key → value.
func parseRcloneConf(conf string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	var cur map[string]string
	for i, line := range strings.Split(conf, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			name := strings.TrimSpace(line[1 : len(line)-1])
			if !validRemote.MatchString(name) {
				return nil, fmt.Errorf("line %d: remote name %q: want letters, digits, '-' or '_'", i+1, name)
			}
			cur = map[string]string{}
			out[name] = cur
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || cur == nil {
			return nil, fmt.Errorf("line %d: want [remote] or key = value", i+1)
		}
		k = strings.TrimSpace(k)
		if !validRemote.MatchString(k) {
			return nil, fmt.Errorf("line %d: key %q", i+1, k)
		}
		cur[k] = strings.TrimSpace(v)
	}
	if len(out) == 0 {
		return nil, errors.New("no [remote] section")
	}
	for name, kv := range out {
		if kv["type"] == "" {
			return nil, fmt.Errorf("remote %s has no type", name)
		}
	}
	return out, nil
}

var validRemote = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// rcloneEnv turns a parsed config into rclone's environment variables.
func rcloneEnv(conf map[string]map[string]string) []string {
	var env []string
	for name, kv := range conf {
		up := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		for k, v := range kv {
			env = append(env, "RCLONE_CONFIG_"+up+"_"+strings.ToUpper(strings.ReplaceAll(k, "-", "_"))+"="+v)
		}
	}
	return env
}

// rcloneServer is a running `rclone serve webdav` for one target.
type rcloneServer struct {
	cmd  *exec.Cmd
	url  string
	user string
	pass string
	done chan struct{}
	once sync.Once
}

var rcloneStarted = regexp.MustCompile(`started on (?:\[)?(http://127\.0\.0\.1:[0-9]+/)`)

// startRclone serves remote:path (location) over loopback WebDAV.
func startRclone(ctx context.Context, dataDir, confText, location string) (*rcloneServer, error) {
	conf, err := parseRcloneConf(confText)
	if err != nil {
		return nil, fmt.Errorf("rclone.conf: %w", err)
	}
	remote, _, _ := strings.Cut(location, ":")
	if _, ok := conf[remote]; !ok {
		return nil, fmt.Errorf("rclone remote %q is not in the imported rclone.conf", remote)
	}
	bin, err := exec.LookPath(rcloneBinary)
	if err != nil {
		return nil, fmt.Errorf("rclone targets need rclone installed (apt install rclone): %w", err)
	}
	rs := &rcloneServer{user: "cairn", pass: randomHex(16), done: make(chan struct{})}
	// Not CommandContext: the server lives until stop, not until ctx.
	// The password goes through the environment, not argv (ps shows argv).
	cmd := exec.Command(bin, "serve", "webdav", location, "--addr", "127.0.0.1:0",
		"--user", rs.user, "--config", os.DevNull, "--retries", "1")
	cmd.Env = append(append(os.Environ(), "RCLONE_PASS="+rs.pass), rcloneEnv(conf)...)
	cmd.Dir = dataDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start rclone: %w", err)
	}
	rs.cmd = cmd
	found := make(chan string, 1)
	var tail []string
	var tailMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if m := rcloneStarted.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
			tailMu.Lock()
			if tail = append(tail, line); len(tail) > 5 {
				tail = tail[1:]
			}
			tailMu.Unlock()
		}
		cmd.Wait()
		close(rs.done)
	}()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case rs.url = <-found:
		return rs, nil
	case <-rs.done:
		err = errors.New("rclone exited")
	case <-t.C:
		err = errors.New("rclone did not start serving within 30s")
	case <-ctx.Done():
		err = ctx.Err()
	}
	rs.stop()
	tailMu.Lock()
	defer tailMu.Unlock()
	return nil, fmt.Errorf("rclone serve webdav %s: %w: %s", location, err, strings.Join(tail, " | "))
}

// stop ends rclone and waits for it.
func (rs *rcloneServer) stop() {
	rs.once.Do(func() {
		if rs.cmd.Process != nil {
			syscall.Kill(-rs.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-rs.done:
			case <-time.After(5 * time.Second):
				syscall.Kill(-rs.cmd.Process.Pid, syscall.SIGKILL)
				<-rs.done
			}
		}
	})
}

func (rs *rcloneServer) backend() *davBackend {
	return &davBackend{base: strings.TrimRight(rs.url, "/"), user: rs.user, pass: rs.pass, hc: &http.Client{Timeout: 10 * time.Minute},
		dirs: map[string]bool{}}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// davBackend is a pool.Backend over a WebDAV server (here: rclone's).
// A Put goes to a temporary name and is then MOVEd into place, so an
// interrupted upload never looks like a complete object.
type davBackend struct {
	base       string
	user, pass string
	hc         *http.Client
	mu         sync.Mutex
	mkcolMu    sync.Mutex
	dirs       map[string]bool // collections known to exist
	// A WebDAV MOVE that overwrites may remove the old object before
	// the new one is in place; a Get that finds nothing during or right
	// after one of our moves of that name tries again (only this process
	// writes a replica).
	moving  map[string]chan struct{}
	moveGen map[string]uint64
}

// shortReader notes when its input ends before the declared size.
type shortReader struct {
	r    io.Reader
	n    int64
	done bool
}

func (s *shortReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err == io.EOF {
		s.done = true
	}
	return n, err
}

// shortInput returns a plain (not transient) error when a Put's input was
// shorter than its size: retrying cannot help.
func shortInput(sr *shortReader, size int64, name string, err error) error {
	if sr.done && sr.n < size {
		return fmt.Errorf("put %s: the input ended after %d of %d bytes", name, sr.n, size)
	}
	return err
}

var _ pool.Backend = (*davBackend)(nil)

const davTmp = ".cairn-upload-"

// davMaxBuffered bounds a Get's body (pool objects are at most a few
// MiB; the format allows 1 GiB plus framing).
const davMaxBuffered = 1<<30 + 1<<20

func (b *davBackend) Location() string { return "webdav " + b.base }

func (b *davBackend) req(ctx context.Context, method, name string, body io.Reader, size int64, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, b.base+escapePath(name), body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	req.SetBasicAuth(b.user, b.pass)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %s %s: %v", pool.ErrTransient, method, name, err)
	}
	return resp, nil
}

func escapePath(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/" + strings.Join(parts, "/")
}

func (b *davBackend) fail(resp *http.Response, what string) error {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	msg := fmt.Sprintf("%s on %s: %s", what, b.base, resp.Status)
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s", pool.ErrNotFound, msg)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusLocked:
		return fmt.Errorf("%w: %s", pool.ErrTransient, msg)
	}
	return errors.New(msg)
}

// mkdirs makes the collections above name.
func (b *davBackend) mkdirs(ctx context.Context, name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	var parts []string
	for d := dir; d != "."; d = path.Dir(d) {
		parts = append([]string{d}, parts...)
	}
	// One MKCOL at a time (rclone answers 423 Locked to concurrent ones
	// of a collection); each collection is made once per backend.
	b.mkcolMu.Lock()
	defer b.mkcolMu.Unlock()
	for _, d := range parts {
		b.mu.Lock()
		known := b.dirs[d]
		b.mu.Unlock()
		if known {
			continue
		}
		for attempt := 0; ; attempt++ {
			resp, err := b.req(ctx, "MKCOL", d+"/", nil, 0, nil)
			if err != nil {
				return err
			}
			code := resp.StatusCode
			// 201 made, 405 exists; 423 a lock held by another client.
			if code == http.StatusLocked && attempt < 20 {
				resp.Body.Close()
				if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
					return err
				}
				continue
			}
			if code != http.StatusMethodNotAllowed && code/100 != 2 {
				return b.fail(resp, "mkcol "+d)
			}
			resp.Body.Close()
			break
		}
		b.mu.Lock()
		b.dirs[d] = true
		b.mu.Unlock()
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *davBackend) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := pool.ValidateName(name); err != nil {
		return err
	}
	if err := b.mkdirs(ctx, name); err != nil {
		return err
	}
	tmp := path.Join(path.Dir(name), davTmp+randomHex(8))
	sr := &shortReader{r: r}
	resp, err := b.req(ctx, http.MethodPut, tmp, sr, size, nil)
	if err != nil {
		return shortInput(sr, size, name, err)
	}
	if resp.StatusCode/100 != 2 {
		return b.fail(resp, "put "+name)
	}
	resp.Body.Close()
	done := make(chan struct{})
	b.mu.Lock()
	if b.moving == nil {
		b.moving, b.moveGen = map[string]chan struct{}{}, map[string]uint64{}
	}
	for b.moving[name] != nil { // one move of a name at a time
		ch := b.moving[name]
		b.mu.Unlock()
		<-ch
		b.mu.Lock()
	}
	b.moving[name] = done
	b.moveGen[name]++
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.moving, name)
		b.mu.Unlock()
		close(done)
	}()
	resp, err = b.req(ctx, "MOVE", tmp, nil, 0, map[string]string{"Destination": b.base + escapePath(name), "Overwrite": "T"})
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return b.fail(resp, "move into "+name)
	}
	resp.Body.Close()
	return nil
}

func (b *davBackend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := pool.ValidateName(name); err != nil {
		return nil, err
	}
	hdr := map[string]string{}
	if off > 0 || length >= 0 {
		if length == 0 {
			return io.NopCloser(strings.NewReader("")), nil
		}
		rng := fmt.Sprintf("bytes=%d-", off)
		if length > 0 {
			rng += fmt.Sprint(off + length - 1)
		}
		hdr["Range"] = rng
	}
	for attempt := 0; ; attempt++ {
		b.mu.Lock()
		gen, ch := b.moveGen[name], b.moving[name]
		b.mu.Unlock()
		rc, err := b.get(ctx, name, off, length, hdr)
		if err == nil {
			// Objects are small (chunks of at most a few MiB): read the
			// body here, so a body cut short by our own overwrite of the
			// name can be fetched again.
			var data []byte
			data, err = io.ReadAll(io.LimitReader(rc, davMaxBuffered+1))
			rc.Close()
			if err == nil && len(data) > davMaxBuffered {
				err = fmt.Errorf("get %s on %s: larger than %d bytes", name, b.base, davMaxBuffered)
				return nil, err
			}
			if err == nil {
				return io.NopCloser(bytes.NewReader(data)), nil
			}
			err = fmt.Errorf("%w: get %s on %s: %v", pool.ErrTransient, name, b.base, err)
		} else if !errors.Is(err, pool.ErrNotFound) {
			return nil, err
		}
		if attempt == 10 {
			return nil, err
		}
		b.mu.Lock()
		gen2, ch2 := b.moveGen[name], b.moving[name]
		b.mu.Unlock()
		if ch == nil && ch2 == nil && gen == gen2 {
			return nil, err // really missing, or a read error of its own
		}
		for _, c := range []chan struct{}{ch, ch2} {
			if c != nil {
				select {
				case <-c:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
		}
	}
}

func (b *davBackend) get(ctx context.Context, name string, off, length int64, hdr map[string]string) (io.ReadCloser, error) {
	resp, err := b.req(ctx, http.MethodGet, name, nil, 0, hdr)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if off > 0 { // server ignored the range
			if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
				resp.Body.Close()
				return nil, fmt.Errorf("get %s: %w", name, err)
			}
		}
		if length >= 0 {
			return struct {
				io.Reader
				io.Closer
			}{io.LimitReader(resp.Body, length), resp.Body}, nil
		}
		return resp.Body, nil
	case http.StatusPartialContent:
		return resp.Body, nil
	case http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		return io.NopCloser(strings.NewReader("")), nil
	}
	return nil, b.fail(resp, "get "+name)
}

// davMultistatus is the part of a PROPFIND answer we read.
type davMultistatus struct {
	Responses []struct {
		Href   string `xml:"href"`
		Length int64  `xml:"propstat>prop>getcontentlength"`
		MTime  string `xml:"propstat>prop>getlastmodified"`
		Coll   *struct {
			Collection *struct{} `xml:"collection"`
		} `xml:"propstat>prop>resourcetype"`
	} `xml:"response"`
}

func (b *davBackend) propfind(ctx context.Context, name, depth string) (*davMultistatus, error) {
	resp, err := b.req(ctx, "PROPFIND", name, strings.NewReader(`<?xml version="1.0"?><propfind xmlns="DAV:"><allprop/></propfind>`), -1,
		map[string]string{"Depth": depth, "Content-Type": "application/xml"})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusMultiStatus {
		return nil, b.fail(resp, "propfind "+name)
	}
	defer resp.Body.Close()
	var ms davMultistatus
	if err := xml.NewDecoder(io.LimitReader(resp.Body, 1<<30)).Decode(&ms); err != nil {
		return nil, fmt.Errorf("%w: propfind %s on %s: %v", pool.ErrTransient, name, b.base, err)
	}
	return &ms, nil
}

func (b *davBackend) Stat(ctx context.Context, name string) (pool.ObjectInfo, error) {
	if err := pool.ValidateName(name); err != nil {
		return pool.ObjectInfo{}, err
	}
	ms, err := b.propfind(ctx, name, "0")
	if err != nil {
		return pool.ObjectInfo{}, err
	}
	if len(ms.Responses) == 0 {
		return pool.ObjectInfo{}, fmt.Errorf("stat %s on %s: %w", name, b.base, pool.ErrNotFound)
	}
	r := ms.Responses[0]
	if r.Coll != nil && r.Coll.Collection != nil {
		return pool.ObjectInfo{}, fmt.Errorf("stat %s on %s: a directory: %w", name, b.base, pool.ErrNotFound)
	}
	mt, _ := http.ParseTime(r.MTime)
	return pool.ObjectInfo{Name: name, Size: r.Length, ModTime: mt}, nil
}

func (b *davBackend) List(ctx context.Context, prefix string, fn func(pool.ObjectInfo) error) error {
	// List the deepest collection the prefix names, then filter.
	dir := prefix
	if !strings.HasSuffix(dir, "/") {
		dir = path.Dir(dir)
		if dir == "." {
			dir = ""
		}
	}
	dir = strings.TrimSuffix(dir, "/")
	ms, err := b.propfind(ctx, dir+"/", "infinity")
	if errors.Is(err, pool.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	basePath, _ := url.Parse(b.base)
	for _, r := range ms.Responses {
		if r.Coll != nil && r.Coll.Collection != nil {
			continue
		}
		href := r.Href
		if u, err := url.Parse(href); err == nil {
			href = u.Path
		}
		name := strings.TrimPrefix(strings.TrimPrefix(href, basePath.Path), "/")
		if !strings.HasPrefix(name, prefix) || strings.Contains(path.Base(name), davTmp) || pool.ValidateName(name) != nil {
			continue
		}
		mt, _ := http.ParseTime(r.MTime)
		if err := fn(pool.ObjectInfo{Name: name, Size: r.Length, ModTime: mt}); err != nil {
			return err
		}
	}
	return nil
}

func (b *davBackend) Delete(ctx context.Context, name string) error {
	if err := pool.ValidateName(name); err != nil {
		return err
	}
	resp, err := b.req(ctx, http.MethodDelete, name, nil, 0, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return nil
	}
	if resp.StatusCode/100 != 2 {
		return b.fail(resp, "delete "+name)
	}
	resp.Body.Close()
	return nil
}
