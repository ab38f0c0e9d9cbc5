package main

import (
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
)

// davGet is the WebDAV client of the bench: it walks a tree with PROPFIND
// (Depth: 1, directory by directory, as file managers and rclone do) and
// GETs every file into a local directory, with -workers requests at once.
// rclone is not used for timing: its WebDAV backend paces every request
// to at least 10 ms, which hides the servers' speed.
func davGet(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("davget", flag.ContinueOnError)
	base := fs.String("url", "", "collection URL (ends in /)")
	dst := fs.String("dst", "", "local directory")
	workers := fs.Int("workers", 4, "parallel requests")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*base)
	if err != nil || *dst == "" {
		return fmt.Errorf("davget: need --url and --dst (%v)", err)
	}
	root := strings.TrimSuffix(u.Path, "/") + "/"
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *workers * 2}}
	dirs := make(chan string, 1<<16)
	files := make(chan string, 1<<16)
	var pending sync.WaitGroup
	var nfiles, nbytes atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	pending.Add(1)
	dirs <- ""
	var wg sync.WaitGroup
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case rel, ok := <-dirs:
					if !ok {
						return
					}
					subs, fls, err := propfind(ctx, cl, u, root, rel)
					if err != nil {
						fail(err)
					}
					if err := os.MkdirAll(filepath.Join(*dst, filepath.FromSlash(rel)), 0o755); err != nil {
						fail(err)
					}
					pending.Add(len(subs) + len(fls))
					for _, s := range subs {
						dirs <- s
					}
					for _, f := range fls {
						files <- f
					}
					pending.Done()
				case rel := <-files:
					n, err := get(ctx, cl, u, root, rel, filepath.Join(*dst, filepath.FromSlash(rel)))
					if err != nil {
						fail(err)
					}
					nfiles.Add(1)
					nbytes.Add(n)
					pending.Done()
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	pending.Wait()
	close(dirs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	fmt.Fprintf(os.Stderr, "davget: %d files, %d bytes\n", nfiles.Load(), nbytes.Load())
	return ctx.Err()
}

type multistatus struct {
	Responses []struct {
		Href       string    `xml:"href"`
		Collection *struct{} `xml:"propstat>prop>resourcetype>collection"`
	} `xml:"response"`
}

const propfindBody = `<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>`

func escapePath(rel string) string {
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

func propfind(ctx context.Context, cl *http.Client, u *url.URL, root, rel string) (dirs, files []string, err error) {
	target := *u
	target.Path, target.RawPath = "", ""
	p := root + escapePath(rel)
	if rel != "" {
		p += "/"
	}
	req, err := http.NewRequestWithContext(ctx, "PROPFIND", target.String()+p, strings.NewReader(propfindBody))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Depth", "1")
	req.Header.Set("Content-Type", "application/xml")
	resp, err := cl.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusMultiStatus {
		return nil, nil, fmt.Errorf("PROPFIND %s: %s", p, resp.Status)
	}
	var ms multistatus
	if err := xml.NewDecoder(resp.Body).Decode(&ms); err != nil {
		return nil, nil, fmt.Errorf("PROPFIND %s: %w", p, err)
	}
	for _, r := range ms.Responses {
		h, err := url.PathUnescape(r.Href)
		if err != nil {
			return nil, nil, err
		}
		if i := strings.Index(h, "://"); i >= 0 { // absolute URL
			h = h[i+3:]
			h = h[strings.IndexByte(h, '/'):]
		}
		name := strings.TrimPrefix(strings.TrimSuffix(h, "/"), strings.TrimSuffix(root, "/"))
		name = strings.TrimPrefix(name, "/")
		if name == strings.TrimSuffix(rel, "/") {
			continue // the collection itself
		}
		parent := path.Dir(name)
		if parent == "." {
			parent = ""
		}
		if parent != rel {
			return nil, nil, fmt.Errorf("PROPFIND %s: unexpected member %q", p, h)
		}
		if r.Collection != nil {
			dirs = append(dirs, name)
		} else {
			files = append(files, name)
		}
	}
	return dirs, files, nil
}

func get(ctx context.Context, cl *http.Client, u *url.URL, root, rel, dst string) (int64, error) {
	target := *u
	target.Path, target.RawPath = "", ""
	req, err := http.NewRequestWithContext(ctx, "GET", target.String()+root+escapePath(rel), nil)
	if err != nil {
		return 0, err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", rel, resp.Status)
	}
	f, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = errors.New("short body")
	}
	if err == nil {
		if lm, perr := http.ParseTime(resp.Header.Get("Last-Modified")); perr == nil {
			err = os.Chtimes(dst, lm, lm)
		}
	}
	return n, err
}
