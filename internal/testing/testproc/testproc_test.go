package testproc

import (
	"os/exec"
	"testing"
)

func TestStartAwaitKill(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p := Start(t, "sh", sh, []string{"GREETING=hi"}, "-c", `echo "ready addr=127.0.0.1:$$ $GREETING"; exec sleep 30`)
	if got := p.Await(`ready addr=(\S+) hi`); got == "" {
		t.Fatal("no address")
	}
	p.Kill()
	select {
	case <-p.Done():
	default:
		t.Fatal("process still running after Kill")
	}
}
