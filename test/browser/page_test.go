package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestStatusPageInBrowser loads the admin listener's status page in
// headless Chromium while a registered client sends requests and after an
// unregistered one was refused, and checks what a person sees: the
// client's SPIFFE ID with its PID and executable, its SVID expiry and its
// pool to the echo route; the refusal with its reason; the explain view
// the refusal links to. The page loads nothing but itself (no external
// assets). PROCMESH_SCREENSHOT=FILE saves a screenshot of it there.
func TestStatusPageInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is missing: `make test` installs it (Debian package chromium)")
	}
	n := startNode(t)
	ctx, stop := context.WithCancel(context.Background())
	served := n.traffic(ctx)
	defer func() {
		stop()
		if ok := <-served; ok == 0 {
			t.Errorf("no request answered 200 while the page was loaded:\n%s", n.log.String())
		}
	}()
	refused := n.refused(t)
	// Wait for traffic to have opened the identity's pool.
	time.Sleep(300 * time.Millisecond)

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 900))...)
	defer cancel()
	var mu sync.Mutex
	var requested []string
	bctx, cancel := chromedp.NewContext(alloc, chromedp.WithListener(func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requested = append(requested, e.Request.URL)
			mu.Unlock()
		}
	}))
	defer cancel()
	bctx, cancel = context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	base := "http://" + n.admin
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#identities"))); err != nil {
		t.Fatalf("load the status page: %v\n%s", err, n.log.String())
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	title, err := chromedp.Run(bctx, chromedp.Title())
	if err != nil || title != "procmesh status" {
		t.Errorf("title %q, %v", title, err)
	}
	ready, identities, refusals := text("#ready"), text("#identities"), text("#refusals")
	self, _ := os.Executable()
	for _, want := range []string{"spiffe://example.org/demo/client", fmt.Sprint(os.Getpid()), self, "echo (http1)", "in 59m"} {
		if !strings.Contains(identities, want) {
			t.Errorf("identities table lacks %q:\n%s", want, identities)
		}
	}
	for _, want := range []string{fmt.Sprint(refused), filepath.Join(n.dir, "unregistered-client"), "no_entry", "matches no registration entry"} {
		if !strings.Contains(refusals, want) {
			t.Errorf("refusals table lacks %q:\n%s", want, refusals)
		}
	}
	if !strings.Contains(ready, "listeners") || strings.Contains(ready, "not ready") {
		t.Errorf("readiness shown: %s", ready)
	}
	if path := os.Getenv("PROCMESH_SCREENSHOT"); path != "" {
		shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// What a person does next: follow the refusal's link to see why.
	link := fmt.Sprintf(`#refusals a[href="/explain?pid=%d"]`, refused)
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(link)), chromedp.WaitVisible(chromedp.CSS("#explain"))); err != nil {
		t.Fatalf("follow the explain link: %v", err)
	}
	explain := text("#explain")
	for _, want := range []string{fmt.Sprintf("process         %d", refused), "unix:path:" + filepath.Join(n.dir, "unregistered-client"), "none: procmesh refuses this process"} {
		if !strings.Contains(explain, want) {
			t.Errorf("explain view lacks %q:\n%s", want, explain)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, u := range requested {
		if !strings.HasPrefix(u, base+"/") {
			t.Errorf("the page loaded %s: the status page must need nothing but procmesh", u)
		}
	}
}
