package archive

import (
	"context"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// Method is the source method of an archive fetched over another puller.
const Method = "archive"

func init() { pullers.Register(Method, func() pullers.Puller { return &Puller{} }) }

// Puller imports one archive file that another puller reads from the
// host: Options["fetch"] names that puller's method (local, sftp, smb,
// ftp, tar, …) and the other options and credentials are its own;
// Source.Path is the archive's path on the host. The archive streams from
// the fetching puller straight into Import (never to a temp file, except
// a zip, which needs random access), and the snapshot is the archive's
// contents. Options["max_ratio"] and ["max_bytes"] set the bomb caps.
//
// The fetching puller walks the archive's directory but not below it
// (an exclude of "*/*"), and only the archive's content is read.
type Puller struct{}

// Pull fetches and imports the archive. j.Sink must be a Sink (StoreContent
// and Flush): *pool.Writer and the appliance's job sink are.
func (p *Puller) Pull(ctx context.Context, j *pullers.Job) error {
	sink, ok := j.Sink.(Sink)
	if !ok {
		return fmt.Errorf("archive %s: the sink (%T) cannot store contents ahead of entries", j.Source.Path, j.Sink)
	}
	o := j.Source.Options
	fetch := o["fetch"]
	if fetch == "" || fetch == Method {
		return fmt.Errorf("%w: archive source %s: option fetch must name the method that reads the archive (e.g. sftp, smb, local)", pullers.ErrPermanent, j.Source.Name)
	}
	inner, err := pullers.Get(fetch)
	if err != nil {
		return fmt.Errorf("%w: archive source %s: fetch: %v", pullers.ErrPermanent, j.Source.Name, err)
	}
	var opts Options
	if v := o["max_ratio"]; v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 1 {
			return fmt.Errorf("%w: option max_ratio %q: want a number ≥ 1", pullers.ErrPermanent, v)
		}
		opts.MaxRatio = f
	}
	if v := o["max_bytes"]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return fmt.Errorf("%w: option max_bytes %q: want a byte count", pullers.ErrPermanent, v)
		}
		opts.MaxBytes = n
	}
	opts.TempDir = o["spool_dir"]
	dir, name := path.Split(j.Source.Path)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: archive source %s: path %q does not name a file", pullers.ErrPermanent, j.Source.Name, j.Source.Path)
	}
	switch {
	case dir == "":
		dir = "."
	case dir != "/":
		dir = strings.TrimSuffix(dir, "/")
	}
	innerOpts := make(map[string]string, len(o))
	for k, v := range o {
		if k != "fetch" && k != "max_ratio" && k != "max_bytes" {
			innerOpts[k] = v
		}
	}
	a := &fetchSink{want: name, sink: sink, opts: opts, progress: j.Progress}
	err = inner.Pull(ctx, &pullers.Job{
		Host:     j.Host,
		Source:   pullers.Source{Method: fetch, Name: j.Source.Name, Path: dir, Excludes: []string{"*/*"}, Options: innerOpts, Secret: j.Source.Secret},
		Sink:     a,
		Progress: func(pullers.Progress) {},
	})
	if a.err != nil {
		return a.err // the import's own error says more
	}
	if err != nil {
		return fmt.Errorf("fetch %s over %s: %w", j.Source.Path, fetch, err)
	}
	if !a.found {
		if a.fileErr != nil {
			return fmt.Errorf("fetch %s over %s: %w", j.Source.Path, fetch, a.fileErr)
		}
		return fmt.Errorf("fetch %s over %s: no such file", j.Source.Path, fetch)
	}
	return nil
}

// fetchSink receives the fetching puller's walk of the archive's
// directory and imports the one file wanted.
type fetchSink struct {
	want     string
	sink     Sink
	opts     Options
	progress func(pullers.Progress)
	found    bool
	err      error // the import failed (fatal)
	fileErr  error // the fetcher could not read the archive
}

func (f *fetchSink) Add(ctx context.Context, p string, e pool.Entry, r io.Reader) error {
	if p != f.want {
		return nil // the rest of the directory: not read
	}
	if e.Type != pool.TypeFile || r == nil {
		f.err = fmt.Errorf("%w: %s is a %s, not an archive file", ErrRefused, p, e.Type)
		return f.err
	}
	f.found = true
	f.opts.Progress = f.progress
	if _, err := Import(ctx, r, f.sink, f.opts); err != nil {
		f.err = fmt.Errorf("import %s: %w", p, err)
		return f.err
	}
	return nil
}

func (f *fetchSink) RecordError(p string, err error) {
	if p == f.want || p == "." {
		f.fileErr = err
	}
}

var _ pullers.Sink = (*fetchSink)(nil)
