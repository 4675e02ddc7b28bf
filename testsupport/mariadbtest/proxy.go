package mariadbtest

import (
	"context"
	bin "encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy sits between a client (typically a replica's IO thread) and a
// server and can hold back, refuse or cut the conversation at chosen
// points of the MySQL protocol: what a source that is restarting, slow to
// register a replica, or dying in the middle of a binlog stream looks like
// to the replica, made deterministic.
type Proxy struct {
	Addr string // host:port clients connect to
	Host string
	Port int

	target string
	ln     net.Listener
	// OnCommand, when set, is asked about every client command (the first
	// payload byte of a packet with sequence number 0) before it is
	// forwarded.
	onCommand atomic.Pointer[func(cmd byte) Action]
	// cutAfter, when positive, is how many more server bytes may pass
	// before every connection is cut.
	cutAfter atomic.Int64
	refusing atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// Action is what the proxy does with a client command.
type Action struct {
	// Delay holds the command back this long before forwarding it.
	Delay time.Duration
	// Drop closes both connections instead of forwarding the command.
	Drop bool
}

// Client commands the tests act on.
const (
	ComQuery          byte = 0x03
	ComBinlogDump     byte = 0x12
	ComRegisterSlave  byte = 0x15
	ComBinlogDumpGTID byte = 0x1e
)

// StartProxy listens on a free loopback port and forwards to target.
func StartProxy(t TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	a := ln.Addr().(*net.TCPAddr)
	p := &Proxy{Addr: a.String(), Host: "127.0.0.1", Port: a.Port, target: target, ln: ln, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// OnCommand sets (or, with nil, clears) the command hook.
func (p *Proxy) OnCommand(f func(cmd byte) Action) {
	if f == nil {
		p.onCommand.Store(nil)
		return
	}
	p.onCommand.Store(&f)
}

// CutAfter lets n more bytes from the server through, then cuts every
// connection and refuses new ones (the source died mid-stream).
func (p *Proxy) CutAfter(n int64) { p.cutAfter.Store(n) }

// Refuse closes every connection now and every new one at once (true), or
// lets connections through again (false).
func (p *Proxy) Refuse(on bool) {
	p.refusing.Store(on)
	if on {
		p.closeAll()
	}
}

// Close stops the proxy and every connection through it.
func (p *Proxy) Close() {
	p.ln.Close()
	p.closeAll()
	p.wg.Wait()
}

func (p *Proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *Proxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refusing.Load() {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

func (p *Proxy) handle(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	p.track(client, true)
	p.track(server, true)
	defer func() {
		client.Close()
		server.Close()
		p.track(client, false)
		p.track(server, false)
	}()
	done := make(chan struct{}, 2)
	go func() { p.toClient(client, server); done <- struct{}{} }()
	go func() { p.toServer(server, client); done <- struct{}{} }()
	<-done
}

// toClient copies the server's bytes, honouring CutAfter.
func (p *Proxy) toClient(client, server net.Conn) {
	defer client.Close()
	defer server.Close()
	buf := make([]byte, 16<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if left := p.cutAfter.Load(); left > 0 {
				if int64(n) >= left {
					client.Write(chunk[:left])
					p.cutAfter.Store(0)
					p.Refuse(true)
					return
				}
				p.cutAfter.Add(-int64(n))
			}
			if _, werr := client.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// toServer copies the client's packets one by one, asking the hook about
// each command.
func (p *Proxy) toServer(server, client net.Conn) {
	defer client.Close()
	defer server.Close()
	hdr := make([]byte, 4)
	for {
		if _, err := io.ReadFull(client, hdr); err != nil {
			return
		}
		size := int(bin.LittleEndian.Uint32(append(hdr[:3:3], 0)))
		pkt := make([]byte, 4+size)
		copy(pkt, hdr)
		if _, err := io.ReadFull(client, pkt[4:]); err != nil {
			return
		}
		if hdr[3] == 0 && size > 0 {
			if f := p.onCommand.Load(); f != nil {
				act := (*f)(pkt[4])
				if act.Delay > 0 {
					time.Sleep(act.Delay)
				}
				if act.Drop {
					return
				}
			}
		}
		if _, err := server.Write(pkt); err != nil {
			return
		}
	}
}

// ProxiedReplica starts a source and a read-only replica that reads from it
// (GTID, current_pos) through a Proxy, and waits until it replicates. The
// replica does not replicate back.
func ProxiedReplica(t TB) (src, rep *Server, px *Proxy) {
	t.Helper()
	src = Start(t, Options{ServerID: 1, DomainID: 1})
	rep = Start(t, Options{ServerID: 2, DomainID: 2, ReadOnly: true})
	px = StartProxy(t, net.JoinHostPort(src.Host, strconv.Itoa(src.Port)))
	ctx := context.Background()
	if err := rep.Exec(ctx, fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', "+
		"MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
		px.Host, px.Port, ReplUser, ReplPassword), "START SLAVE"); err != nil {
		t.Fatalf("replica through proxy: %v", err)
	}
	if err := rep.WaitReplicating(ctx, 20*time.Second); err != nil {
		t.Fatalf("replica through proxy: %v", err)
	}
	return src, rep, px
}
