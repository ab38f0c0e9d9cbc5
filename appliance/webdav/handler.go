package webdav

import (
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/webdav"
)

// Allow is the method list of the read-only share, as OPTIONS and every 405
// answer it.
const Allow = "OPTIONS, GET, HEAD, PROPFIND"

// NewHandler serves fsys read-only over WebDAV under prefix (e.g. "/dav";
// "" for the root). It does no authentication: callers MUST wrap it in the
// appliance's auth middleware and pass an fsys filtered to what the caller
// may see.
func NewHandler(fsys fs.FS, prefix string) http.Handler {
	return NewHandlerOptions(fsys, prefix, Options{})
}

// NewHandlerOptions is NewHandler with options (a cache shared between
// handlers, the immutability rule).
func NewHandlerOptions(fsys fs.FS, prefix string, o Options) http.Handler {
	prefix = strings.TrimRight(prefix, "/")
	log := slog.Default().With("component", "webdav")
	r, _ := fsys.(Refresher)
	wfs := newFileSystem(fsys, o)
	return &handler{
		refresher: r,
		prefix:    prefix,
		fs:        wfs,
		dav: &webdav.Handler{
			Prefix:     prefix,
			FileSystem: wfs,
			// Required by x/net/webdav even though LOCK is never allowed.
			LockSystem: webdav.NewMemLS(),
			Logger: func(r *http.Request, err error) {
				if err != nil {
					log.Debug("request", "method", r.Method, "path", r.URL.Path, "err", err)
				}
			},
		},
	}
}

type handler struct {
	prefix string
	dav    *webdav.Handler
	fs     *fileSystem

	refresher   Refresher // nil when the tree has no cached top levels
	rmu         sync.Mutex
	lastRefresh time.Time
}

// Refresher is implemented by trees that cache their snapshot list, like
// *pool.TreeFS. The handler calls Refresh at most every RefreshInterval so
// that new snapshots appear. A tree that wraps another (a per-user filter)
// should forward Refresh.
type Refresher interface{ Refresh() }

// RefreshInterval is the least time between two Refresh calls.
const RefreshInterval = 2 * time.Second

func (h *handler) refresh() {
	if h.refresher == nil {
		return
	}
	h.rmu.Lock()
	defer h.rmu.Unlock()
	if now := time.Now(); now.Sub(h.lastRefresh) >= RefreshInterval {
		h.refresher.Refresh()
		h.lastRefresh = now
	}
}

const finiteDepth = `<?xml version="1.0" encoding="utf-8"?>
<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>
`

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodOptions:
		w.Header().Set("Allow", Allow)
		w.Header().Set("DAV", "1")
		w.Header().Set("MS-Author-Via", "DAV")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	case http.MethodGet, http.MethodHead, "PROPFIND":
	default:
		w.Header().Set("Allow", Allow)
		http.Error(w, "read-only share: "+r.Method+" is not allowed", http.StatusMethodNotAllowed)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	if !ok || (rest != "" && rest[0] != '/') {
		http.NotFound(w, r)
		return
	}
	if _, err := CleanPath(rest); err != nil {
		http.NotFound(w, r)
		return
	}
	if r.Method == "PROPFIND" {
		switch r.Header.Get("Depth") {
		case "0", "1":
		default:
			w.Header().Set("Content-Type", "application/xml; charset=utf-8")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(finiteDepth))
			return
		}
	}
	h.refresh()
	if r.Method != "PROPFIND" {
		// A file is typed by extension, as PROPFIND's getcontenttype
		// says, rather than sniffed by http.ServeContent from its first
		// 512 bytes.
		if info, err := h.fs.Stat(r.Context(), rest); err == nil && info.Mode().IsRegular() {
			w.Header().Set("Content-Type", contentType(info.Name()))
		}
	}
	h.dav.ServeHTTP(w, r)
}
