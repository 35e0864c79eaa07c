// A minimal token relay in Go, the peer `make bench` measures duet's pipes against: each
// connection sends `/pipe TOKEN\n`, two with the same token are joined, and io.Copy moves
// the bytes both ways (on Linux it uses splice(2) between TCP sockets). No limits, no
// logging: the fastest a straightforward Go relay gets. A magic-wormhole transit handshake
// (`please relay TOKEN for side SIDE`) is paired the same way, by TOKEN, and both ends are
// told `ok` first, so the bench can put it beside duet's transit relay as well.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
)

var (
	mu      sync.Mutex
	waiting = map[string]net.Conn{}
)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		go handle(c)
	}
}

func handle(c net.Conn) {
	c.(*net.TCPConn).SetNoDelay(true)
	// Read the handshake byte by byte so that nothing after it is taken from the socket.
	var line strings.Builder
	one := make([]byte, 1)
	for {
		if _, err := c.Read(one); err != nil || line.Len() > 200 {
			c.Close()
			return
		}
		if one[0] == '\n' {
			break
		}
		line.WriteByte(one[0])
	}
	token := strings.TrimPrefix(line.String(), "/pipe ")
	transit := strings.HasPrefix(token, "please relay ")
	if transit {
		token = strings.Fields(token)[2]
	}
	mu.Lock()
	peer, ok := waiting[token]
	if !ok {
		waiting[token] = c
		mu.Unlock()
		return
	}
	delete(waiting, token)
	mu.Unlock()
	if transit {
		peer.Write([]byte("ok\n"))
		c.Write([]byte("ok\n"))
	}
	done := make(chan struct{})
	go func() { pump(peer, c); close(done) }()
	pump(c, peer)
	<-done
	c.Close()
	peer.Close()
}

// pump copies src to dst, then passes the end of the stream on.
func pump(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.(*net.TCPConn).CloseWrite()
}
