// SPDX-License-Identifier: Apache-2.0

package stream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/oomtrace/oomtrace/internal/event"
)

// ErrNoAgent: nothing serves at the socket (no file, or nobody listens);
// a session then traces by itself.
var ErrNoAgent = errors.New("no agent serves the stream")

// NotAgentError: something answers at the socket, but not as an oomtrace
// agent does.
type NotAgentError struct {
	Path string
	Err  error
}

func (e *NotAgentError) Error() string {
	return fmt.Sprintf("socket %s is not an oomtrace agent's stream: %v", e.Path, e.Err)
}

func (e *NotAgentError) Unwrap() error { return e.Err }

// RefusedError: the agent refused the request (its message says why).
type RefusedError struct{ Msg string }

func (e *RefusedError) Error() string { return "the agent refused the request: " + e.Msg }

// maxLine bounds one line from the agent (events with long stacks and
// task lists stay far below).
const maxLine = 4 << 20

// Client is one session's subscription to an agent.
type Client struct {
	path string
	conn *net.UnixConn
	r    *bufio.Reader
	// Ready is the agent's first line; Last the latest status line.
	Ready, Last Status
}

// Dial connects to the agent at path and sends req. It returns ErrNoAgent
// (wrapped) when nothing serves there, a *NotAgentError when what answers
// does not speak the protocol within timeout, and a *RefusedError when the
// agent refuses req.
func Dial(path string, req Request, timeout time.Duration) (*Client, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		if fi, serr := os.Stat(path); serr == nil && fi.Mode().Type() != fs.ModeSocket {
			return nil, &NotAgentError{Path: path, Err: errors.New("not a socket")}
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s: %w", ErrNoAgent, path, err)
		}
		return nil, fmt.Errorf("connect to the agent's stream: %w", err)
	}
	cl := &Client{path: path, conn: c.(*net.UnixConn), r: bufio.NewReaderSize(c, 64<<10)}
	b, err := json.Marshal(req)
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(append(b, '\n')); err != nil {
		c.Close()
		return nil, &NotAgentError{Path: path, Err: fmt.Errorf("send the request: %w", err)}
	}
	line, err := cl.readLine()
	if err != nil {
		c.Close()
		return nil, &NotAgentError{Path: path, Err: fmt.Errorf("no answer to the request within %s: %w", timeout, err)}
	}
	st, ok := parseStatus(line)
	switch {
	case !ok:
		c.Close()
		return nil, &NotAgentError{Path: path, Err: fmt.Errorf("its first line is not a stream status: %.80q", line)}
	case st.Stream == StatusError:
		c.Close()
		return nil, &RefusedError{Msg: st.Error}
	case st.Stream != StatusReady || st.Version != ProtocolVersion:
		c.Close()
		return nil, &NotAgentError{Path: path, Err: fmt.Errorf("want a ready line of protocol version %d, got %.80q", ProtocolVersion, line)}
	}
	c.SetDeadline(time.Time{})
	cl.Ready, cl.Last = st, st
	return cl, nil
}

// Next returns the next event line (newline included, as the agent
// writes it) and the event it holds. Status lines are taken in on the way
// (Last). It returns io.EOF after the agent's end line, and an error when
// the agent goes away without one.
func (cl *Client) Next() ([]byte, *event.Event, error) {
	for {
		line, err := cl.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, nil, errors.New("the agent closed the stream (did it stop?)")
			}
			return nil, nil, fmt.Errorf("read the agent's stream: %w", err)
		}
		if st, ok := parseStatus(line); ok {
			cl.Last = st
			if st.Stream == StatusEnd {
				return nil, nil, io.EOF
			}
			continue
		}
		var e event.Event
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, nil, fmt.Errorf("the agent sent a line that is no event: %w", err)
		}
		return line, &e, nil
	}
}

// Finish tells the agent the session is done and reads up to its end
// line, for the final counts (Last); events still coming are discarded.
func (cl *Client) Finish(timeout time.Duration) Status {
	defer cl.conn.Close()
	cl.conn.CloseWrite()
	cl.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		if _, _, err := cl.Next(); err != nil {
			return cl.Last
		}
	}
}

// CloseWrite tells the agent the session is done: it answers with what
// is still queued and its end line (Next then returns io.EOF).
func (cl *Client) CloseWrite() error { return cl.conn.CloseWrite() }

// Close drops the connection at once.
func (cl *Client) Close() error { return cl.conn.Close() }

// SetReadDeadline bounds the wait in Next.
func (cl *Client) SetReadDeadline(t time.Time) error { return cl.conn.SetReadDeadline(t) }

func (cl *Client) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, err := cl.r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("a line longer than %d bytes", maxLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if len(line) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return line, nil
	}
}

// statusPrefix starts every status line and no event line (those start
// with "time").
var statusPrefix = []byte(`{"stream":`)

func parseStatus(line []byte) (Status, bool) {
	var st Status
	if !bytes.HasPrefix(line, statusPrefix) || json.Unmarshal(line, &st) != nil {
		return st, false
	}
	return st, true
}
