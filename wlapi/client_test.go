//go:build linux

package wlapi_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/procmesh/procmesh/internal/fdpass"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The test binary re-executed (a copy per identity, at its own path) is
// the Workload API's client, in the mode PROCMESH_TEST_CLIENT names; it
// prints one JSON result per line.
func TestMain(m *testing.M) {
	if mode := os.Getenv("PROCMESH_TEST_CLIENT"); mode != "" {
		if err := runClient(mode); err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// result is what a client saw.
type result struct {
	ID      string   `json:"id,omitempty"`      // SPIFFE ID of the SVID received
	Serials []string `json:"serials,omitempty"` // serials of the SVIDs received, in order
	Code    string   `json:"code,omitempty"`    // gRPC status code of a failure
	Err     string   `json:"err,omitempty"`
	PID     int      `json:"pid,omitempty"`
}

func failure(err error) result {
	return result{Code: status.Code(err).String(), Err: err.Error()}
}

// Modes:
//
//	source       go-spiffe's X509Source on SPIFFE_ENDPOINT_SOCKET; checks the
//	             SVID's chain against the bundle it got; waits for
//	             PM_ROTATIONS distinct SVIDs (default 1)
//	fetch        go-spiffe's FetchX509SVID once, at PM_SOCK
//	nometa       FetchX509SVID on a raw gRPC client without the header
//	jwt          go-spiffe's FetchJWTSVID for audience PM_AUD, naming PM_JWT_ID
//	bundles      the trust domains of FetchX509Bundles and FetchX509SVID
//	jwt-validate FetchJWTSVID for PM_AUD, then the token validated by
//	             ValidateJWTSVID, and by this process against FetchJWTBundles;
//	             then ValidateJWTSVID for another audience (must fail)
//	jwt-bundles  PM_N messages of FetchJWTBundles on a raw client: key IDs
//	x509-bundles PM_N messages of FetchX509Bundles on a raw client: the
//	             trust domains and the fingerprints of their roots
//	twice        FetchJWTSVID twice on one connection, the second once the
//	             file PM_GO exists
//	stream       FetchX509SVID on a raw client; one result per message, then
//	             the status that ended the stream
//	share-exit   connect, start a child (sleep-fd) that inherits the socket,
//	             print the first message of a stream, and exit
//	give         connect, hand the socket to PM_NEXT (speak), wait for it:
//	             inherited, or over SCM_RIGHTS with PM_HOW=scm
//	connect-exec connect, exec PM_NEXT (speak) with the socket open
//	attested-exec the same, once procmesh has attested the connection
//	speak        FetchX509SVID over the socket at descriptor PM_FD (default 3)
//	sleep-fd     sleep, holding descriptor 3
func runClient(mode string) error {
	sock := os.Getenv("PM_SOCK")
	out := json.NewEncoder(os.Stdout)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch mode {
	case "source":
		return source(ctx, out)
	case "fetch":
		svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+sock))
		if err != nil {
			return out.Encode(failure(err))
		}
		return out.Encode(result{ID: svid.ID.String(), Serials: []string{svid.Certificates[0].SerialNumber.Text(16)}})
	case "nometa":
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		return stream(context.Background(), c, out, 1)
	case "jwt":
		svid, err := workloadapi.FetchJWTSVID(ctx, jwtParams(), workloadapi.WithAddr("unix://"+sock))
		if err != nil {
			return out.Encode(failure(err))
		}
		return out.Encode(result{ID: svid.ID.String()})
	case "bundles":
		// The trust domains of FetchX509Bundles, then of FetchX509SVID's.
		addr := workloadapi.WithAddr("unix://" + sock)
		bs, err := workloadapi.FetchX509Bundles(ctx, addr)
		if err != nil {
			return out.Encode(failure(err))
		}
		xc, err := workloadapi.FetchX509Context(ctx, addr)
		if err != nil {
			return out.Encode(failure(err))
		}
		for _, set := range []*x509bundle.Set{bs, xc.Bundles} {
			var r result
			for _, b := range set.Bundles() {
				r.Serials = append(r.Serials, b.TrustDomain().String())
			}
			out.Encode(r)
		}
		return nil
	case "jwt-validate":
		return jwtValidate(ctx, sock, out)
	case "jwt-bundles":
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(os.Getenv("PM_N"))
		return jwtBundles(withHeader(ctx), c, out, n)
	case "x509-bundles":
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		n, _ := strconv.Atoi(os.Getenv("PM_N"))
		return x509Bundles(withHeader(ctx), c, out, n)
	case "twice":
		// One connection, two RPCs: the second once the file PM_GO exists.
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		c := workloadpb.NewSpiffeWorkloadAPIClient(conn)
		for i := 0; i < 2; i++ {
			for i == 1 {
				if _, err := os.Stat(os.Getenv("PM_GO")); err == nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			resp, err := c.FetchJWTSVID(withHeader(ctx), &workloadpb.JWTSVIDRequest{Audience: []string{"https://sts.example"}})
			if err != nil {
				out.Encode(failure(err))
				continue
			}
			out.Encode(result{ID: resp.Svids[0].SpiffeId})
		}
		return nil
	case "stream":
		c, err := net.Dial("unix", sock)
		if err != nil {
			return err
		}
		n := -1
		if s := os.Getenv("PM_N"); s != "" {
			n, _ = strconv.Atoi(s)
		}
		return stream(withHeader(context.Background()), c, out, n)
	case "share-exit":
		fd, err := fdpass.Dial(sock, false)
		if err != nil {
			return err
		}
		child := self("sleep-fd")
		child.Stdout, child.Stderr = nil, nil // the test reads this one's output to its end
		child.ExtraFiles = []*os.File{os.NewFile(uintptr(fd), "conn")}
		if err := child.Start(); err != nil {
			return err
		}
		out.Encode(result{PID: child.Process.Pid})
		c, err := net.FileConn(os.NewFile(uintptr(fd), "conn"))
		if err != nil {
			return err
		}
		return stream(withHeader(ctx), c, out, 1)
	case "give":
		fd, err := fdpass.Dial(sock, false)
		if err != nil {
			return err
		}
		cmd := self("speak")
		cmd.Path = os.Getenv("PM_NEXT")
		if os.Getenv("PM_HOW") != "scm" {
			cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(fd), "conn")}
			return cmd.Run()
		}
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(pair[1]), "pair")}
		if err := cmd.Start(); err != nil {
			return err
		}
		if err := fdpass.Send(pair[0], fd); err != nil {
			return err
		}
		return cmd.Wait()
	case "connect-exec", "attested-exec":
		fd, err := fdpass.Dial(sock, false)
		if err != nil {
			return err
		}
		if mode == "attested-exec" {
			// procmesh writes its HTTP/2 settings once the handshake,
			// and so the attestation, is done: wait for them, unread.
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, 10000); err != nil || fds[0].Revents&unix.POLLIN == 0 {
				return fmt.Errorf("procmesh never answered the connection: %v", err)
			}
		}
		next := os.Getenv("PM_NEXT")
		env := []string{"PROCMESH_TEST_CLIENT=speak", "PM_FD=" + strconv.Itoa(fd)}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "PROCMESH_TEST_CLIENT=") {
				env = append(env, kv)
			}
		}
		return syscall.Exec(next, []string{next, "-test.run=^$"}, env)
	case "speak":
		fd := 3
		if s := os.Getenv("PM_FD"); s != "" {
			fd, _ = strconv.Atoi(s)
		}
		if os.Getenv("PM_HOW") == "scm" {
			var err error
			if fd, err = fdpass.Receive(3); err != nil {
				return err
			}
		}
		c, err := net.FileConn(os.NewFile(uintptr(fd), "conn"))
		if err != nil {
			return err
		}
		return stream(withHeader(ctx), c, out, 1)
	case "sleep-fd":
		time.Sleep(time.Minute)
		return nil
	}
	return fmt.Errorf("unknown client mode %q", mode)
}

// source is the recipe of the README: go-spiffe's X509Source with the
// socket from SPIFFE_ENDPOINT_SOCKET.
func source(ctx context.Context, out *json.Encoder) error {
	src, err := workloadapi.NewX509Source(ctx)
	if err != nil {
		return out.Encode(failure(err))
	}
	defer src.Close()
	want, _ := strconv.Atoi(os.Getenv("PM_ROTATIONS"))
	var r result
	seen := map[string]bool{}
	for len(r.Serials) < max(want, 1) {
		svid, err := src.GetX509SVID()
		if err != nil {
			return err
		}
		bundle, err := src.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
		if err != nil {
			return err
		}
		// The chain verifies against the bundle it came with, and the
		// key is the leaf's (go-spiffe checked that when it parsed it).
		if _, _, err := x509svid.Verify(svid.Certificates, bundle); err != nil {
			return fmt.Errorf("SVID does not verify against its bundle: %w", err)
		}
		if s := svid.Certificates[0].SerialNumber.Text(16); !seen[s] {
			seen[s] = true
			r.ID, r.Serials = svid.ID.String(), append(r.Serials, s)
			continue
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("saw %d SVIDs, waited for %d", len(r.Serials), want)
		case <-src.Updated():
		}
	}
	return out.Encode(r)
}

func jwtParams() jwtsvid.Params {
	p := jwtsvid.Params{Audience: os.Getenv("PM_AUD")}
	if s := os.Getenv("PM_JWT_ID"); s != "" {
		p.Subject = spiffeid.RequireFromString(s)
	}
	return p
}

func withHeader(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
}

// stream reads up to n messages (n < 0: until the stream ends) of
// FetchX509SVID over c, printing each, then the status that ended it.
func stream(ctx context.Context, c net.Conn, out *json.Encoder, n int) error {
	client, conn, err := rawClient(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	st, err := client.FetchX509SVID(ctx, &workloadpb.X509SVIDRequest{})
	if err != nil {
		return out.Encode(failure(err))
	}
	for i := 0; n < 0 || i < n; i++ {
		resp, err := st.Recv()
		if err != nil {
			return out.Encode(failure(err))
		}
		var r result
		for _, s := range resp.Svids {
			svid, err := x509svid.ParseRaw(s.X509Svid, s.X509SvidKey)
			if err != nil {
				return err
			}
			r.ID = s.SpiffeId
			r.Serials = append(r.Serials, svid.Certificates[0].SerialNumber.Text(16))
		}
		if err := out.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// dialFD connects a Unix socket that stays open across exec.

// self is this binary again in mode, with this process's environment.
func self(mode string) *exec.Cmd {
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "PROCMESH_TEST_CLIENT="+mode)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd
}

// jwtValidate fetches a JWT-SVID and has it validated three ways.
func jwtValidate(ctx context.Context, sock string, out *json.Encoder) error {
	addr := workloadapi.WithAddr("unix://" + sock)
	aud := os.Getenv("PM_AUD")
	tok, err := workloadapi.FetchJWTSVID(ctx, jwtParams(), addr)
	if err != nil {
		return out.Encode(failure(err))
	}
	byAPI, err := workloadapi.ValidateJWTSVID(ctx, tok.Marshal(), aud, addr)
	if err != nil {
		return fmt.Errorf("ValidateJWTSVID: %w", err)
	}
	bundles, err := workloadapi.FetchJWTBundles(ctx, addr)
	if err != nil {
		return fmt.Errorf("FetchJWTBundles: %w", err)
	}
	local, err := jwtsvid.ParseAndValidate(tok.Marshal(), bundles, []string{aud})
	if err != nil {
		return fmt.Errorf("the token does not validate against the JWT bundle: %w", err)
	}
	if byAPI.ID != tok.ID || local.ID != tok.ID {
		return fmt.Errorf("token of %s validated as %s and %s", tok.ID, byAPI.ID, local.ID)
	}
	_, err = workloadapi.ValidateJWTSVID(ctx, tok.Marshal(), "https://other.example", addr)
	return out.Encode(result{ID: tok.ID.String(), Code: status.Code(err).String()})
}

// rawClient is a Workload API client over c, without go-spiffe's
// sources around it, to see each message of a stream. It never dials
// again: the process's one connection is what is attested.
func rawClient(c net.Conn) (workloadpb.SpiffeWorkloadAPIClient, *grpc.ClientConn, error) {
	used := false
	conn, err := grpc.NewClient("passthrough:///workload-api",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
			if used {
				return nil, errors.New("one connection only")
			}
			used = true
			return c, nil
		}))
	if err != nil {
		return nil, nil, err
	}
	return workloadpb.NewSpiffeWorkloadAPIClient(conn), conn, nil
}

// printStream opens a stream with open and prints n of its messages,
// each as render makes it; a failure to open or receive is printed as
// the result and ends the stream.
func printStream[M any](c net.Conn, out *json.Encoder, n int,
	open func(workloadpb.SpiffeWorkloadAPIClient) (grpc.ServerStreamingClient[M], error),
	render func(*M) (result, error)) error {
	client, conn, err := rawClient(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	st, err := open(client)
	if err != nil {
		return out.Encode(failure(err))
	}
	for i := 0; i < n; i++ {
		msg, err := st.Recv()
		if err != nil {
			return out.Encode(failure(err))
		}
		r, err := render(msg)
		if err != nil {
			return err
		}
		if err := out.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// jwtBundles prints the key IDs of n FetchJWTBundles messages.
func jwtBundles(ctx context.Context, c net.Conn, out *json.Encoder, n int) error {
	return printStream(c, out, n, func(client workloadpb.SpiffeWorkloadAPIClient) (grpc.ServerStreamingClient[workloadpb.JWTBundlesResponse], error) {
		return client.FetchJWTBundles(ctx, &workloadpb.JWTBundlesRequest{})
	}, func(resp *workloadpb.JWTBundlesResponse) (result, error) {
		var r result
		for td, jwks := range resp.Bundles {
			b, err := jwtbundle.Parse(spiffeid.RequireTrustDomainFromString(td), jwks)
			if err != nil {
				return r, err
			}
			r.ID = td
			for kid := range b.JWTAuthorities() {
				r.Serials = append(r.Serials, kid)
			}
		}
		sort.Strings(r.Serials)
		return r, nil
	})
}

// x509Bundles prints n FetchX509Bundles messages: in ID the trust domains
// of each (sorted, space-separated), in Serials the sha256 of every root
// certificate in it (sorted).
func x509Bundles(ctx context.Context, c net.Conn, out *json.Encoder, n int) error {
	return printStream(c, out, n, func(client workloadpb.SpiffeWorkloadAPIClient) (grpc.ServerStreamingClient[workloadpb.X509BundlesResponse], error) {
		return client.FetchX509Bundles(ctx, &workloadpb.X509BundlesRequest{})
	}, func(resp *workloadpb.X509BundlesResponse) (result, error) {
		var r result
		var tds []string
		for td, der := range resp.Bundles {
			certs, err := x509.ParseCertificates(der)
			if err != nil {
				return r, fmt.Errorf("bundle of %s: %w", td, err)
			}
			tds = append(tds, td)
			for _, cert := range certs {
				r.Serials = append(r.Serials, fingerprint(cert))
			}
		}
		sort.Strings(tds)
		sort.Strings(r.Serials)
		r.ID = strings.Join(tds, " ")
		return r, nil
	})
}

// fingerprint is the hex sha256 of a certificate's DER.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
