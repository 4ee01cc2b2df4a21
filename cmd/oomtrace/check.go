// SPDX-License-Identifier: Apache-2.0

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"

	"github.com/oomtrace/oomtrace/internal/cgroup"
	"github.com/oomtrace/oomtrace/internal/probe"
)

func newCheckCmd() *cobra.Command {
	var (
		asJSON bool
		tier   string
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Say what this kernel supports and which tier each hook would use",
		Long: `Check BTF, the BPF ring buffer, each attach tier (fentry, kprobe,
tracepoint), each hook and the tier it would use, and where the memory
cgroup hierarchy is. It loads and attaches the real programs for a moment,
so run it as the agent runs (root). Exits 1 when OOM kills cannot be traced.`,
		Example: `  sudo oomtrace check
  sudo oomtrace check --json | jq .hooks`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			forced := probe.TierNone
			if tier != "" {
				var err error
				if forced, err = probe.ParseTier(tier); err != nil {
					return usageError{fmt.Errorf("--tier: %w", err)}
				}
			}
			r := probe.Check(forced)
			h, herr := cgroup.FindMemoryHierarchy()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(struct {
					probe.Report
					Cgroup cgroup.Hierarchy `json:"memory_cgroup"`
				}{r, h}); err != nil {
					return err
				}
			} else {
				printReport(cmd.OutOrStdout(), r, h, herr)
			}
			if !r.CanTrace {
				return errors.New(r.Conclusion)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().StringVar(&tier, "tier", "", "check with this tier forced, as `agent --tier` would run: fentry, kprobe or tracepoint")
	return cmd
}

func printReport(w io.Writer, r probe.Report, h cgroup.Hierarchy, herr error) {
	yes := func(s probe.Support) string {
		if s.OK {
			return "yes"
		}
		return "no "
	}
	fmt.Fprintf(w, "kernel          %s\n", r.Kernel)
	fmt.Fprintf(w, "btf             %s %s\n", yes(r.BTF), r.BTF.Detail)
	fmt.Fprintf(w, "ring buffer     %s %s\n", yes(r.RingBuf), r.RingBuf.Detail)
	tiers := make([]string, 0, len(r.Tiers))
	for t := range r.Tiers {
		tiers = append(tiers, t)
	}
	sort.Strings(tiers)
	for _, t := range tiers {
		fmt.Fprintf(w, "tier %-10s %s %s\n", t, yes(r.Tiers[t]), r.Tiers[t].Detail)
	}
	if herr != nil {
		fmt.Fprintf(w, "memory cgroup   no  %v\n", herr)
	} else {
		fmt.Fprintf(w, "memory cgroup   yes v%d at %s (%s layout)\n", h.Version, h.Mount, h.Mode)
	}
	if len(r.Hooks) > 0 { // none when the forced tier was refused
		fmt.Fprintln(w)
		fmt.Fprintf(w, "%-26s %-11s %s\n", "HOOK", "TIER", "DETAIL")
	}
	for _, hk := range r.Hooks {
		fmt.Fprintf(w, "%-26s %-11s %s\n", hk.Hook, hk.Tier, hk.Detail)
		for _, s := range hk.Skipped {
			fmt.Fprintf(w, "%-26s %-11s   passed over: %s\n", "", "", s)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, r.Conclusion)
}
