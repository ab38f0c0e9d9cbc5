package rsync

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"slices"
	"strings"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// Compat flags the sender announces from protocol 30 on.
const (
	cfIncRecurse     = 1 << 0
	cfChksumSeedFix  = 1 << 5
	cfVarintFlist    = 1 << 7
	cfID0Names       = 1 << 8
	itemReportXattr  = 1 << 8
	itemBasisFollows = 1 << 11
	itemXnameFollows = 1 << 12
	itemTransfer     = 1 << 15
)

// transfer30 is protocol 30/31 after the version exchange: compat flags,
// checksum negotiation, the seed, then a multiplexed conversation in both
// directions.
func (p *Puller) transfer30(ctx context.Context, t *target, s *session, j *pullers.Job) error {
	raw := &rawReader{r: s.in}
	compat, err := raw.varint("compat flags")
	if err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	if compat&cfIncRecurse != 0 {
		return fmt.Errorf("%s: %w", t, protoErr("the sender turned on incremental recursion, which was not offered"))
	}
	if compat&cfVarintFlist != 0 {
		// Both sides send their checksum choices, then read the other's.
		s.out.Write(appendVstring(nil, "md5"))
		if err := s.out.Flush(); err != nil {
			return fmt.Errorf("%s: checksum negotiation: %w", t, err)
		}
		theirs, err := raw.vstring("checksum list", 1024)
		if err != nil {
			return fmt.Errorf("%s: checksum negotiation: %w", t, err)
		}
		if !slices.Contains(strings.Fields(string(theirs)), "md5") {
			return fmt.Errorf("%s: %w", t, protoErr("the sender offers no md5 checksum (only %s)", quote(string(theirs))))
		}
	}
	seed, err := raw.int32("checksum seed")
	if err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	s.out = bufio.NewWriterSize(muxWriter{s.out}, 32<<10)
	for _, pat := range j.Source.Excludes {
		if pat == "" || strings.ContainsAny(pat, "\n\x00") {
			continue
		}
		rule := "- " + pat
		putInt(s.out, int32(len(rule)))
		s.out.WriteString(rule)
	}
	putInt(s.out, 0)
	if err := s.out.Flush(); err != nil {
		return fmt.Errorf("%s: send excludes: %w", t, err)
	}
	dm := newDemux(s.in)
	r := &rawReader{r: dm}
	fl := &flist30{}
	o := flistOpts{owner: true, devices: true, links: true, hard: true, maxEntries: p.MaxEntries,
		proto: s.proto, varintFlags: compat&cfVarintFlist != 0, xattrs: t.xattrs, acls: t.acls}
	list, err := readFileList30(r, o, fl)
	if err != nil {
		return fmt.Errorf("%s: file list: %w", t, err)
	}
	x := &xfer{p: p, t: t, s: s, j: j, dm: dm, r: r, seed: seed, proto: s.proto,
		seedFix: compat&cfChksumSeedFix != 0, fl: fl, ndxOut: newNdxCodec(), ndxIn: newNdxCodec()}
	if !t.numeric {
		if x.users, err = readIDList30(r, "user", compat&cfID0Names != 0); err != nil {
			return fmt.Errorf("%s: file list: %w", t, err)
		}
		if x.groups, err = readIDList30(r, "group", compat&cfID0Names != 0); err != nil {
			return fmt.Errorf("%s: file list: %w", t, err)
		}
	}
	plan, err := x.plan(ctx, list)
	if err != nil {
		return err
	}
	for i := range plan {
		if plan[i].has(itemReq) {
			plan[i].flags |= itemXfer
		}
	}
	if err := x.planXattrs(ctx, plan); err != nil {
		return err
	}
	x.setPositions(plan)
	for _, m := range dm.msgs {
		p.log().Info("rsync: server message", "source", t.String(), "msg", m)
	}
	genErr := make(chan error, 1)
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { genErr <- x.generate30(gctx, plan) }()
	rerr := x.receive30(ctx, plan, genErr)
	if rerr != nil {
		cancel()
		s.closer()
		<-genErr
		return rerr
	}
	for range 5 { // total read, written, size, list build and transfer time
		if _, err := r.varlong("statistics", 3); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
	}
	if s.proto >= 31 {
		// The sender answers our early "delete done" with its goodbye.
		v, err := x.ndxIn.read(r)
		if err != nil {
			return fmt.Errorf("%s: goodbye: %w", t, err)
		}
		if v != ndxDone {
			return fmt.Errorf("%s: %w", t, protoErr("goodbye %d", v))
		}
	}
	s.out.Write(x.ndxOut.appendNdx(nil, ndxDone)) // goodbye
	if err := s.out.Flush(); err != nil {
		return fmt.Errorf("%s: goodbye: %w", t, err)
	}
	if fl.ioErr != 0 {
		p.log().Warn("rsync: the sender reported I/O errors while listing", "source", t.String(), "flags", fl.ioErr)
	}
	x.report("")
	return nil
}

// readIDList30 reads a uid or gid name list of protocol 30: (varint id,
// byte length, name) until id 0, then with CF_ID0_NAMES the name of id 0.
func readIDList30(r *rawReader, what string, id0 bool) (map[uint32]string, error) {
	names := map[uint32]string{0: "root"}
	for n := 0; ; n++ {
		id, err := r.varint(what + " list")
		if err != nil {
			return nil, err
		}
		if id == 0 {
			break
		}
		if n >= maxIDs {
			return nil, protoErr("%s list longer than %d names", what, maxIDs)
		}
		name, err := readIDName(r, what)
		if err != nil {
			return nil, err
		}
		names[uint32(id)] = name
	}
	if id0 {
		name, err := readIDName(r, what)
		if err != nil {
			return nil, err
		}
		if name != "" {
			names[0] = name
		}
	}
	return names, nil
}

// planXattrs decides which long xattr values to ask for: those the
// previous snapshot does not already hold with the same MD5. The first
// entry (in request order) of a set asks for them; later entries sharing
// the set get them from that answer.
func (x *xfer) planXattrs(ctx context.Context, plan []item) error {
	x.xreq = map[*item][]int32{}
	if !x.t.xattrs {
		return nil
	}
	for k := range plan {
		it := &plan[k]
		if it.f.xset < 0 {
			continue
		}
		set := x.fl.xsets[it.f.xset]
		var prev *pool.Entry
		looked := false
		for i := range set {
			xi := &set[i]
			if !xi.abbrev || xi.pending {
				continue
			}
			if !looked && x.j.Previous != nil {
				looked = true
				if pe, ok, err := x.j.Previous.Lookup(ctx, it.rel()); err == nil && ok {
					prev = &pe
				}
			}
			if prev != nil {
				if v, ok := prev.Xattrs[xi.name]; ok && len(v) == xi.length {
					if sum := md5.Sum(v); bytes.Equal(sum[:], xi.value) {
						xi.value, xi.abbrev = v, false
						continue
					}
				}
			}
			xi.pending = true
			x.xreq[it] = append(x.xreq[it], int32(i+1))
			it.flags |= itemReq
		}
	}
	return nil
}

// fillXattrs puts an item's xattrs and ACLs into e just before it is
// stored (long values have arrived by then).
func (x *xfer) fillXattrs(it *item, e *pool.Entry) {
	if x.fl == nil {
		return
	}
	f := it.f
	var m map[string][]byte
	put := func(k string, v []byte) {
		if m == nil {
			m = make(map[string][]byte)
		}
		m[k] = v
	}
	if f.acl >= 0 {
		if v := x.fl.acls[f.acl].accessXattr(f.mode); v != nil {
			put("system.posix_acl_access", v)
		}
	}
	if f.defacl >= 0 {
		if v := x.fl.defacls[f.defacl].defaultXattr(); v != nil {
			put("system.posix_acl_default", v)
		}
	}
	if f.xset >= 0 {
		var missing []string
		for _, xi := range x.fl.xsets[f.xset] {
			if !xattrNameOK(xi.name) {
				continue
			}
			if xi.abbrev {
				missing = append(missing, xi.name)
				continue
			}
			put(xi.name, xi.value)
		}
		if len(missing) > 0 {
			x.recordError(it.rel(), fmt.Errorf("the sender did not send the value of xattr %s", strings.Join(missing, ", ")))
		}
	}
	e.Xattrs = m
}

// generate30 sends a request for every planned item: its index, item
// flags, the xattr values wanted, and for a file the basis checksums;
// then the end of the first phase.
func (x *xfer) generate30(ctx context.Context, plan []item) error {
	w := x.s.out
	var b []byte
	for i := range plan {
		it := &plan[i]
		if !it.has(itemReq) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		x.report(it.rel())
		xreq := x.xreq[it]
		var iflags uint16
		if it.has(itemXfer) {
			iflags |= itemTransfer
		}
		if len(xreq) > 0 {
			iflags |= itemReportXattr
		}
		b = x.ndxOut.appendNdx(b[:0], it.f.ndx)
		b = append(b, byte(iflags), byte(iflags>>8))
		if len(xreq) > 0 {
			prior := int32(0)
			for _, n := range xreq {
				b = appendVarint(b, n-prior)
				prior = n
			}
			b = append(b, 0)
		}
		w.Write(b)
		if it.has(itemXfer) {
			if err := x.sendSums(ctx, it); err != nil {
				return err
			}
		}
	}
	w.Write(x.ndxOut.appendNdx(b[:0], ndxDone))
	return w.Flush()
}

// receive30 stores the plan in order as the sender's answers come: an
// answer's index, item flags, long xattr values, and for a file its data.
// After the first phase it ends the later phases (no redo, no delayed
// updates, no deletions).
func (x *xfer) receive30(ctx context.Context, plan []item, genErr chan error) error {
	pos, phase := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ndx, err := x.ndxIn.read(x.r)
		if err != nil {
			return fmt.Errorf("%s: %w", x.t, err)
		}
		if ndx == ndxDone {
			phase++
			switch phase {
			case 1:
				if err := x.passOver(ctx, plan, &pos, len(plan)); err != nil {
					return err
				}
				// The generator has written its end of phase 0; now
				// end the redo phase, the delayed-update phase and (31)
				// the deletion phase at once.
				if err := <-genErr; err != nil {
					return fmt.Errorf("%s: send requests: %w", x.t, err)
				}
				genErr <- nil
				n := 2
				if x.proto >= 31 {
					n = 3
				}
				var b []byte
				for range n {
					b = x.ndxOut.appendNdx(b, ndxDone)
				}
				x.s.out.Write(b)
				if err := x.s.out.Flush(); err != nil {
					return fmt.Errorf("%s: %w", x.t, err)
				}
			case 3:
				return nil
			}
			continue
		}
		if ndx < 0 {
			return fmt.Errorf("%s: %w", x.t, protoErr("file index %d (incremental recursion was not negotiated)", ndx))
		}
		iflags, err := x.r.shortint("item flags")
		if err != nil {
			return fmt.Errorf("%s: %w", x.t, err)
		}
		if iflags&itemBasisFollows != 0 {
			if _, err := x.r.byte1("basis type"); err != nil {
				return fmt.Errorf("%s: %w", x.t, err)
			}
		}
		if iflags&itemXnameFollows != 0 {
			if _, err := x.r.vstring("xname", maxPath); err != nil {
				return fmt.Errorf("%s: %w", x.t, err)
			}
		}
		i := x.position(ndx)
		if i < pos || phase > 0 {
			return fmt.Errorf("%s: %w", x.t, protoErr("the server sent file %d, which was not asked for (or out of order)", ndx))
		}
		it := &plan[i]
		if iflags&itemReportXattr != 0 {
			if err := x.recvXattrValues(it); err != nil {
				return fmt.Errorf("%s: %s: %w", x.t, quote(it.rel()), err)
			}
		}
		if (iflags&itemTransfer != 0) != it.has(itemXfer) {
			return fmt.Errorf("%s: %w", x.t, protoErr("%s: the server's answer does not match the request (item flags %#x)", quote(it.rel()), iflags))
		}
		if err := x.passOver(ctx, plan, &pos, i); err != nil {
			return err
		}
		if it.has(itemXfer) {
			err = x.recvFile(ctx, it)
		} else {
			err = x.addMeta(ctx, it)
		}
		if err != nil {
			return err
		}
		pos = i + 1
	}
}

// recvXattrValues reads the long xattr values the sender sends after an
// item's flags: (varint number delta, varint length, value) until 0.
func (x *xfer) recvXattrValues(it *item) error {
	if it.f.xset < 0 {
		return protoErr("xattr values for an entry without xattrs")
	}
	set := x.fl.xsets[it.f.xset]
	num := int32(0)
	total := 0
	for {
		rel, err := x.r.varint("xattr number")
		if err != nil {
			return err
		}
		if rel == 0 {
			return nil
		}
		if rel < 0 || num > int32(len(set))-rel {
			return protoErr("xattr number %d+%d out of range (1..%d)", num, rel, len(set))
		}
		num += rel
		xi := &set[num-1]
		if !slices.Contains(x.xreq[it], num) {
			return protoErr("xattr %s was not asked for", quote(xi.name))
		}
		n, err := x.r.uvarint("xattr value length", maxXattrValue)
		if err != nil {
			return err
		}
		if total += n; total > 4*maxXattrValue {
			return protoErr("xattr values of more than %d MiB", 4*maxXattrValue>>20)
		}
		v := make([]byte, n)
		if err := x.r.full(v, "xattr value"); err != nil {
			return err
		}
		xi.value, xi.length, xi.abbrev = v, n, false
	}
}
