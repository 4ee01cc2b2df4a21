// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// kernelsDoc is the table the kernel matrix writes (make vmtest): per
// Debian kernel and forced tier, the tier each hook got, or the refusal.
// The chooser must give the same on the same kernel's description, so the
// test and the document cannot disagree.
const kernelsDoc = "../../docs/kernels.md"

// docRow is one row of kernelsDoc.
type docRow struct {
	release, arch, tier string
	tiers               map[string]string // hook → tier, "none" when not attached
	why                 map[string]string // hook → why not attached (the notes)
	refused             string            // the conclusion, when the tier was refused
	// noFentry is why the kernel has no BPF trampolines, from the table
	// of what each kernel offers; empty when it has them.
	noFentry string
}

// readKernelsDoc parses kernelsDoc's tables and notes; hooks are the
// columns after kernel, arch, --tier and the check's verdict.
func readKernelsDoc(t *testing.T) (rows []*docRow, hookNames []string) {
	t.Helper()
	b, err := os.ReadFile(kernelsDoc)
	if err != nil {
		t.Fatal(err)
	}
	cells := func(line string) []string {
		c := strings.Split(strings.Trim(line, "|"), "|")
		for i := range c {
			c[i] = strings.TrimSpace(c[i])
		}
		return c
	}
	const (
		hookTable = "| kernel | arch | --tier | `oomtrace check` |"
		factTable = "| kernel | arch | page size | fentry (BPF trampolines) |"
		notesHead = "Why a hook is not attached:"
		first     = 4 // the first hook's column
	)
	byKey := map[string]*docRow{}
	noFentry := map[string]string{}
	var in string // the table or list the lines belong to
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, hookTable):
			in = hookTable
			hookNames = cells(line)[first:]
		case strings.HasPrefix(line, factTable), line == notesHead:
			in = line
			if strings.HasPrefix(line, factTable) {
				in = factTable
			}
		case strings.HasPrefix(line, "|---"):
		case in == factTable && strings.HasPrefix(line, "| "):
			c := cells(line)
			if detail, ok := strings.CutPrefix(c[3], "no: "); ok {
				noFentry[c[0]] = detail
			}
		case in == hookTable && strings.HasPrefix(line, "| "):
			c := cells(line)
			if len(c) != first+len(hookNames) {
				t.Fatalf("%s: row %q has %d cells, want %d", kernelsDoc, line, len(c), first+len(hookNames))
			}
			r := &docRow{release: c[0], arch: c[1], tier: c[2], tiers: map[string]string{}, why: map[string]string{}}
			if refusal, ok := strings.CutPrefix(c[first], "refused: "); ok {
				r.refused = refusal
			} else {
				for i, h := range hookNames {
					r.tiers[h] = c[first+i]
				}
			}
			rows = append(rows, r)
			byKey[r.release+" "+r.tier] = r
		case in == notesHead && strings.HasPrefix(line, "- "):
			// - <release>, --tier=<tier>, <hook>: <why>
			release, rest, ok1 := strings.Cut(line[2:], ", --tier=")
			tier, rest, ok2 := strings.Cut(rest, ", ")
			hook, why, ok3 := strings.Cut(rest, ": ")
			r := byKey[release+" "+tier]
			if !ok1 || !ok2 || !ok3 || r == nil {
				t.Fatalf("%s: note %q: want \"- <release>, --tier=<tier>, <hook>: <why>\" for a row of the table", kernelsDoc, line)
			}
			r.why[hook] = why
		}
	}
	if len(rows) == 0 || len(hookNames) == 0 {
		t.Fatalf("%s: no table found", kernelsDoc)
	}
	for _, r := range rows {
		r.noFentry = noFentry[r.release]
	}
	return rows, hookNames
}

// offering describes a kernel: BTF, both tracepoints, every function in
// kallsyms, mark_victim in the given format, and fentry and kprobes
// working or not (nil: they work).
func offering(markVictim string, fentry, kprobes error) kernel {
	k := kernel{markVictim: markVictim, kprobes: kprobes,
		tracepoints: map[string]error{}, fentry: map[string]error{}, symbols: map[string]string{}}
	fentryFns, kprobeFns, tps := targets()
	for _, fn := range fentryFns {
		k.fentry[fn] = fentry
	}
	for _, fn := range kprobeFns {
		k.symbols[fn] = fn
	}
	for _, tp := range tps {
		k.tracepoints[tp] = nil
	}
	return k
}

// debianMarkVictim is the fact that tells the Debian kernels of
// kernelsDoc apart here: the mark_victim format each release has. All of
// them have BTF and kprobes; BPF trampolines, where the table of what
// each kernel offers does not say otherwise (arm64 before 6.0).
var debianMarkVictim = map[string]string{
	"5.10": markVictimPid, // 5.10.0-32: the change was not backported
	"6.1":  markVictimFull,
	"6.12": markVictimFull,
}

// markVictimOf is the mark_victim format of a Debian release: as
// debianMarkVictim says for the three stable series, full for the newest
// kernels of the matrix (6.9 and later have it from upstream).
func markVictimOf(release string) (string, bool) {
	if mv, ok := debianMarkVictim[series(release)]; ok {
		return mv, true
	}
	var major, minor int
	if _, err := fmt.Sscanf(series(release), "%d.%d", &major, &minor); err == nil && (major > 6 || major == 6 && minor >= 9) {
		return markVictimFull, true
	}
	return "", false
}

func series(release string) string {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return release
	}
	return parts[0] + "." + parts[1]
}

// checkChoice compares choose's answer with what is expected of it.
func checkChoice(t *testing.T, got []Choice, err error, want *docRow) {
	t.Helper()
	if want.refused != "" {
		if err == nil {
			t.Fatalf("chose %v, want the refusal %q", tiersOf(got), want.refused)
		}
		// kernelsDoc holds check's conclusion, with "|" written as "/".
		if conclusion := strings.ReplaceAll(cannotTrace+err.Error(), "|", "/"); conclusion != want.refused {
			t.Errorf("refusal\n  %q\nwant\n  %q", conclusion, want.refused)
		}
		return
	}
	if err != nil {
		t.Fatalf("refused (%v), want %v", err, want.tiers)
	}
	if g := tiersOf(got); !mapsEqual(g, want.tiers) {
		t.Errorf("tiers %v, want %v", g, want.tiers)
	}
	for _, c := range got {
		if w, ok := want.why[c.Hook]; ok && c.Detail != w {
			t.Errorf("%s: not attached because %q, want %q", c.Hook, c.Detail, w)
		}
	}
}

func tiersOf(choices []Choice) map[string]string {
	m := map[string]string{}
	for _, c := range choices {
		m[c.Hook] = c.Tier.String()
	}
	return m
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

var forcedTiers = []Tier{TierNone, TierFentry, TierKprobe, TierTracepoint}

// Every row of docs/kernels.md, from a description of its kernel alone.
// The table has no row for the default (no --tier); where fentry works,
// the default is the fentry row: the best tier of each hook; where it does
// not, the kprobe row.
func TestChooseDebianKernels(t *testing.T) {
	rows, hookNames := readKernelsDoc(t)
	var names []string
	for _, h := range hooks {
		names = append(names, h.name)
	}
	if !slices.Equal(hookNames, names) {
		t.Fatalf("%s has columns for hooks %v, the chooser has %v: regenerate it (make vmtest)", kernelsDoc, hookNames, names)
	}
	byKernel := map[string]map[string]*docRow{}
	for _, r := range rows {
		if byKernel[r.release] == nil {
			byKernel[r.release] = map[string]*docRow{}
		}
		byKernel[r.release][r.tier] = r
	}
	for release, byTier := range byKernel {
		mv, ok := markVictimOf(release)
		if !ok {
			t.Errorf("%s lists kernel %s: say here which mark_victim format it has", kernelsDoc, release)
			continue
		}
		var fentryErr error
		best := TierFentry
		for _, r := range byTier {
			if r.noFentry != "" {
				fentryErr, best = errors.New(r.noFentry), TierKprobe
			}
		}
		k := offering(mv, fentryErr, nil)
		for _, forced := range forcedTiers {
			want := byTier[forced.String()]
			if forced == TierNone {
				want = byTier[best.String()]
			}
			t.Run(release+"/--tier="+forced.String(), func(t *testing.T) {
				if want == nil {
					t.Fatalf("%s has no row for --tier=%s", kernelsDoc, forced)
				}
				got, err := choose(k, forced)
				checkChoice(t, got, err, want)
			})
		}
	}
	for s := range debianMarkVictim {
		for _, arch := range []string{"amd64", "arm64"} {
			found := false
			for _, r := range rows {
				found = found || series(r.release) == s && r.arch == arch
			}
			if !found {
				t.Errorf("%s has no %s kernel for %s: the matrix must cover it", kernelsDoc, s, arch)
			}
		}
	}
}

// This machine's kernel (6.18): full mark_victim, no kprobes, and BPF
// trampolines refused. Only the tracepoint tier works; forcing another
// refuses and says why.
func TestChooseNoKprobesNoFentry(t *testing.T) {
	noFentry := errors.New("kernel refuses fentry programs (EPERM before verification: no BPF trampoline support)")
	noKprobes := errors.New("no kprobes: kernel built without CONFIG_KPROBES")
	k := offering(markVictimFull, noFentry, noKprobes)
	tracepointOnly := map[string]string{
		"oom:mark_victim":          "tracepoint",
		"oom_kill_process":         "none",
		"__oom_kill_process":       "none",
		"mem_cgroup_out_of_memory": "none",
		"page_alloc_failure":       "tracepoint",
	}
	for _, tc := range []struct {
		forced      Tier
		tiers       map[string]string
		refusedWith string // in the refusal
	}{
		{TierNone, tracepointOnly, ""},
		{TierTracepoint, tracepointOnly, ""},
		{TierFentry, nil, "--tier=fentry: oom_kill_process cannot use it on this kernel: " + noFentry.Error()},
		{TierKprobe, nil, "--tier=kprobe: oom_kill_process cannot use it on this kernel: " + noKprobes.Error()},
	} {
		t.Run("--tier="+tc.forced.String(), func(t *testing.T) {
			got, err := choose(k, tc.forced)
			if tc.refusedWith != "" {
				if err == nil || err.Error() != tc.refusedWith {
					t.Fatalf("got %v, %v; want the refusal %q", tiersOf(got), err, tc.refusedWith)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := tiersOf(got); !mapsEqual(g, tc.tiers) {
				t.Errorf("tiers %v, want %v", g, tc.tiers)
			}
			for _, c := range got {
				notNeeded := c.Hook == "__oom_kill_process"
				if c.NotNeeded != notNeeded {
					t.Errorf("%s: NotNeeded %v, want %v (%s)", c.Hook, c.NotNeeded, notNeeded, c.Detail)
				}
				if c.Tier == TierNone && !notNeeded && !strings.Contains(c.Detail, "not attached: ") {
					t.Errorf("%s: detail %q: want why it is not attached", c.Hook, c.Detail)
				}
			}
		})
	}
}

// A hook the configuration turns off is not attached, whatever tier it
// could have had, and says why.
func TestTurnOff(t *testing.T) {
	choices, err := choose(offering(markVictimFull, nil, nil), TierNone)
	if err != nil {
		t.Fatal(err)
	}
	turnOff(choices, "page_alloc_failure", "--alloc-failures=false")
	for _, c := range choices {
		off := c.Hook == "page_alloc_failure"
		if c.Off != off || off && (c.Tier != TierNone || c.form != nil || c.Detail != "off: --alloc-failures=false") {
			t.Errorf("%s: %+v; want off only page_alloc_failure, with no form and the reason", c.Hook, c)
		}
	}
}
