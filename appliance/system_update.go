package appliance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Updates, A/B in gokrazy's spirit. Slot A is the binary the appliance
// image ships (/usr/local/sbin/cairn); slot B is an uploaded binary kept
// on the data disk (DATA/system/cairn-b) with its state in
// DATA/system/update.json:
//
//	pending      uploaded; the next start (boot or service restart) tries it
//	trying       slot A started slot B once; B has not yet passed its health check
//	good         B passed its health check (storage and catalog readable
//	             once serving): every later start runs B
//	rolled_back  B crashed or failed its check; A runs, B is kept for the record
//
// Slot A always runs first: it mounts the data disk, reads the state and
// execs B for pending and good. When it finds "trying", B's previous start
// never became healthy (it crashed, hung until killed, or exited after
// updateHealthTimeout), so A rolls back and serves itself.

const (
	slotEnv             = "CAIRN_SLOT" // "B" in a started slot B
	updateDir           = "system"
	slotBName           = "cairn-b"
	updateStateName     = "update.json"
	maxUpdateUpload     = 2 << 30 // an ISO
	updateStatusPending = "pending"
	updateStatusTrying  = "trying"
	updateStatusGood    = "good"
	updateStatusRolled  = "rolled_back"
)

// updateHealthTimeout is how long a started slot B has to pass its
// health check.
var updateHealthTimeout = 3 * time.Minute

// updateState is DATA/system/update.json.
type updateState struct {
	Status    string    `json:"status"`
	Version   string    `json:"version"`
	SHA256    string    `json:"sha256"`
	Uploaded  time.Time `json:"uploaded"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
}

// UpdateBody is the update part of GET /api/v1/system and the answer to
// POST /api/v1/system/update.
type UpdateBody struct {
	RunningSlot string `json:"running_slot"`      // "A" or "B"
	Status      string `json:"status"`            // "none", pending, trying, good, rolled_back
	Version     string `json:"version,omitempty"` // of slot B
	SHA256      string `json:"sha256,omitempty"`
	Uploaded    string `json:"uploaded,omitempty"`
	LastError   string `json:"last_error,omitempty"`
}

func updateBody(dataDir, slot string) UpdateBody {
	b := UpdateBody{RunningSlot: slot, Status: "none"}
	st, err := readUpdateState(dataDir)
	if err != nil || st == nil {
		return b
	}
	b.Status, b.Version, b.SHA256, b.LastError = st.Status, st.Version, st.SHA256, st.LastError
	if !st.Uploaded.IsZero() {
		b.Uploaded = st.Uploaded.UTC().Format(time.RFC3339)
	}
	return b
}

func readUpdateState(dataDir string) (*updateState, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, updateDir, updateStateName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st updateState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("update state %s: %w", updateStateName, err)
	}
	return &st, nil
}

// writeUpdateState writes the state durably (it decides the next boot).
func writeUpdateState(dataDir string, st *updateState) error {
	dir := filepath.Join(dataDir, updateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, updateStateName+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, updateStateName)); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// slotDecision is what a start of slot A does with the update state.
type slotDecision int

const (
	runA slotDecision = iota
	runB
)

// decideSlot moves the state machine one step for a start of slot A and
// says which slot to run. It changes st in place.
func decideSlot(st *updateState) slotDecision {
	if st == nil {
		return runA
	}
	switch st.Status {
	case updateStatusPending:
		st.Status, st.Attempts = updateStatusTrying, st.Attempts+1
		return runB
	case updateStatusTrying:
		st.Status = updateStatusRolled
		if st.LastError == "" {
			st.LastError = fmt.Sprintf("slot B (%s) did not pass its health check after %d start(s): rolled back to slot A", st.Version, st.Attempts)
		}
		return runA
	case updateStatusGood:
		return runB
	}
	return runA
}

// chooseSlot runs in slot A before the appliance opens: it execs slot B
// when the state says so (and does not return then), or rolls back.
func chooseSlot(dataDir string, log *slog.Logger) error {
	st, err := readUpdateState(dataDir)
	if err != nil {
		log.Error("update: unreadable state; running slot A", "err", err)
		return nil
	}
	was := ""
	if st != nil {
		was = st.Status
	}
	d := decideSlot(st)
	if st != nil && st.Status != was {
		if err := writeUpdateState(dataDir, st); err != nil {
			log.Error("update: cannot record the state; running slot A", "err", err)
			return nil
		}
	}
	if st != nil && st.Status == updateStatusRolled && was == updateStatusTrying {
		log.Error("update: rolled back to slot A", "reason", st.LastError)
	}
	if d != runB {
		return nil
	}
	bin := filepath.Join(dataDir, updateDir, slotBName)
	log.Info("update: starting slot B", "version", st.Version, "status", st.Status, "binary", bin)
	env := append(os.Environ(), slotEnv+"=B")
	err = syscall.Exec(bin, append([]string{bin}, os.Args[1:]...), env)
	// Still here: B could not even be started. Roll back now.
	st.Status, st.LastError = updateStatusRolled, fmt.Sprintf("slot B could not start: %v", err)
	if werr := writeUpdateState(dataDir, st); werr != nil {
		log.Error("update: record rollback", "err", werr)
	}
	log.Error("update: rolled back to slot A", "reason", st.LastError)
	return nil
}

// markSlotGood records that a started slot B passed its health check.
func markSlotGood(dataDir string) error {
	st, err := readUpdateState(dataDir)
	if err != nil || st == nil {
		return err
	}
	if st.Status == updateStatusGood {
		return nil
	}
	st.Status, st.LastError = updateStatusGood, ""
	return writeUpdateState(dataDir, st)
}

// handleUpdate takes a new cairn binary (or an appliance ISO holding one
// as /cairn.bin) as the request body and installs it as slot B for the
// next start.
func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request, _ *principal) {
	if err := s.appliance(); err != nil {
		s.writeErr(w, r, err)
		return
	}
	body, err := s.installUpdate(r.Context(), http.MaxBytesReader(w, r.Body, maxUpdateUpload))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.log.Info("update: slot B installed; used at the next boot", "version", body.Version, "sha256", body.SHA256, "by", principalOf(r))
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) installUpdate(ctx context.Context, body io.Reader) (*UpdateBody, error) {
	if m := s.sys.dataMount(s.dataDir); !m.persistent {
		return nil, &httpError{http.StatusConflict, "updates are kept on the data disk, and the data dir is in RAM: choose a data disk first"}
	}
	dir := filepath.Join(s.dataDir, updateDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	up, err := os.CreateTemp(dir, "upload-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(up.Name())
	_, err = io.Copy(up, body)
	if cerr := up.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, badRequest("upload: %v", err)
	}
	in, err := os.Open(up.Name()) // closed for writing: it may be executed
	if err != nil {
		return nil, err
	}
	defer in.Close()
	// An ISO: take its /cairn.bin.
	bin := up.Name()
	if isISO(in) {
		ext, err := os.CreateTemp(dir, "iso-bin-*")
		if err != nil {
			return nil, err
		}
		defer os.Remove(ext.Name())
		err = isoExtract(in, "cairn.bin", ext)
		if cerr := ext.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, badRequest("upload: %v", err)
		}
		bin = ext.Name()
	}
	version, sum, err := checkBinary(ctx, bin)
	if err != nil {
		return nil, badRequest("upload: %v", err)
	}
	dst := filepath.Join(dir, slotBName)
	tmp := dst + ".new"
	if err := copyFileMode(bin, tmp, 0o755); err != nil {
		return nil, err
	}
	if f, err := os.Open(tmp); err == nil {
		f.Sync()
		f.Close()
	}
	if err := os.Rename(tmp, dst); err != nil {
		return nil, err
	}
	st := &updateState{Status: updateStatusPending, Version: version, SHA256: sum, Uploaded: s.now()}
	if err := writeUpdateState(s.dataDir, st); err != nil {
		return nil, err
	}
	s.sys.mu.Lock()
	slot := s.sys.slot
	s.sys.mu.Unlock()
	b := updateBody(s.dataDir, slot)
	return &b, nil
}

// checkBinary accepts a static x86-64 (or this arch's) ELF executable
// that answers `version` with "cairn VERSION"; it returns the version and
// the file's SHA-256.
func checkBinary(ctx context.Context, path string) (version, sum string, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("not a cairn binary (no ELF executable): %v", err)
	}
	machine := f.Machine
	interp := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp = true
		}
	}
	f.Close()
	if want := hostMachine(); machine != want {
		return "", "", fmt.Errorf("binary is for %v, this appliance runs %v", machine, want)
	}
	if interp {
		return "", "", errors.New("binary is dynamically linked: the appliance needs a static build (CGO_ENABLED=0)")
	}
	if err := os.Chmod(path, 0o755); err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "version").Output()
	if err != nil {
		return "", "", fmt.Errorf("`%s version` failed: %v", filepath.Base(path), err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "cairn ")
	if !ok || v == "" {
		return "", "", fmt.Errorf("not a cairn binary: `version` printed %q", bytes.TrimSpace(out))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	h := sha256.Sum256(b)
	return v, hex.EncodeToString(h[:]), nil
}

// hostMachine is the ELF machine of the running binary.
func hostMachine() elf.Machine {
	if f, err := elf.Open("/proc/self/exe"); err == nil {
		defer f.Close()
		return f.Machine
	}
	return elf.EM_X86_64
}

// isISO reports whether r holds an ISO 9660 image.
func isISO(r io.ReaderAt) bool {
	b := make([]byte, 5)
	_, err := r.ReadAt(b, 16*2048+1)
	return err == nil && string(b) == "CD001"
}

// isoExtract copies the file name (case-insensitive, in the root
// directory) of an ISO 9660 image to w. It reads the primary volume
// descriptor's root directory record, then the directory's records.
func isoExtract(r io.ReaderAt, name string, w io.Writer) error {
	pvd := make([]byte, 2048)
	if _, err := r.ReadAt(pvd, 16*2048); err != nil || pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return errors.New("ISO: no primary volume descriptor")
	}
	root := pvd[156 : 156+34]
	lba, size := binary.LittleEndian.Uint32(root[2:]), binary.LittleEndian.Uint32(root[10:])
	if size > 16<<20 {
		return fmt.Errorf("ISO: root directory of %d bytes", size)
	}
	dir := make([]byte, size)
	if _, err := r.ReadAt(dir, int64(lba)*2048); err != nil {
		return fmt.Errorf("ISO: read root directory: %w", err)
	}
	want := strings.ToUpper(name)
	for off := 0; off < len(dir); {
		n := int(dir[off])
		if n == 0 { // records do not cross sectors: skip to the next one
			off = (off/2048 + 1) * 2048
			continue
		}
		if off+n > len(dir) || n < 34 {
			break
		}
		rec := dir[off : off+n]
		nl := int(rec[32])
		if 33+nl <= n {
			id := strings.ToUpper(string(rec[33 : 33+nl]))
			id, _, _ = strings.Cut(id, ";")
			id = strings.TrimSuffix(id, ".")
			if id == want && rec[25]&2 == 0 {
				flba, fsize := binary.LittleEndian.Uint32(rec[2:]), binary.LittleEndian.Uint32(rec[10:])
				_, err := io.Copy(w, io.NewSectionReader(r, int64(flba)*2048, int64(fsize)))
				return err
			}
		}
		off += n
	}
	return fmt.Errorf("ISO: no /%s in the image (not a Cairn appliance ISO?)", name)
}
