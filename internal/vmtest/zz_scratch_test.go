package vmtest

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestScratch(t *testing.T) {
	k, err := FindKernel(os.Getenv("S"))
	if err != nil {
		t.Fatal(err)
	}
	memhog := t.TempDir() + "/memhog"
	if err := BuildStatic(context.Background(), ".", "./testdata/memhog", memhog); err != nil {
		t.Fatal(err)
	}
	to, _ := time.ParseDuration(os.Getenv("TO"))
	res, err := Boot(context.Background(), BootOptions{Kernel: k, Script: os.Getenv("SCRIPT"), Timeout: to,
		Files: []File{{Guest: "/bin/memhog", Host: memhog}}})
	t.Logf("err=%v exit=%d dur=%v init=%v\nCONSOLE:\n%s\nOUTPUT:\n%q", err, res.ExitStatus, res.Duration, res.InitAt, res.Console, res.Output)
}
