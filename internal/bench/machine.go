package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

type machineInfo struct {
	CPU, Cores, RAM, Disk, Kernel, Go string
}

func machine(ctx context.Context, work string) machineInfo {
	m := machineInfo{CPU: "unknown", Cores: strconv.Itoa(runtime.NumCPU()), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.RAM = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	m.Kernel = firstLine(ctx, "uname", "-srm")
	// The mount holding the work directory: longest matching mount point.
	dev, mnt, fstype, opts := "", "", "", ""
	if f, err := os.Open("/proc/mounts"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 4 {
				continue
			}
			mp := fl[1]
			if (work == mp || strings.HasPrefix(work, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(mnt) {
				dev, mnt, fstype, opts = fl[0], mp, fl[2], fl[3]
			}
		}
		f.Close()
	}
	m.Disk = fmt.Sprintf("%s on %s, %s (%s)", dev, mnt, fstype, opts)
	if out, err := exec.CommandContext(ctx, "lsblk", "-dno", "NAME,SIZE,ROTA,TYPE,MODEL", dev).Output(); err == nil {
		f := strings.Fields(string(out))
		if len(f) >= 3 {
			kind := "non-rotational (SSD/virtual)"
			if f[2] == "1" {
				kind = "rotational"
			}
			m.Disk += fmt.Sprintf("; lsblk: %s, %s, %s", f[0], f[1], kind)
			if len(f) > 4 {
				m.Disk += ", " + strings.Join(f[4:], " ")
			}
		}
	}
	return m
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// processCPU maps every user-space process except this one to its CPU
// time so far, including the children it has reaped, in USER_HZ ticks.
// Kernel threads are left out.
func processCPU() map[int]int64 {
	out := map[int]int64{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		// state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
		if len(f) < 15 || f[1] == "2" || pid == 2 {
			continue
		}
		var t int64
		for _, v := range f[11:15] {
			n, _ := strconv.ParseInt(v, 10, 64)
			t += n
		}
		out[pid] = t
	}
	return out
}

// othersCPU is the CPU time other processes used between two processCPU
// snapshots. The measured child started and was reaped in between, so it
// is in neither; processes that exited meanwhile are counted through
// their parent's reaped-children time.
func othersCPU(before, after map[int]int64) time.Duration {
	var ticks int64
	for pid, t := range after {
		ticks += max(0, t-before[pid])
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ = 100
}

// busyJiffies is the system-wide non-idle CPU time from /proc/stat, in
// USER_HZ ticks (steal counted as busy: the CPU was not ours to use).
func busyJiffies() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
		if i == 3 || i == 4 {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return busy
}
