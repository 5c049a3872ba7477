// gogateway: grpc-gateway (v1, Debian's 1.6.4) in front of a gRPC upstream, with the
// generated handlers of edgedemo.library.v1.LibraryService and edgetest.v1.StreamService.
//
// Usage: gogateway -upstream 127.0.0.1:PORT [-stream-upstream 127.0.0.1:PORT2]
//                  [-listen 127.0.0.1:8081] [-port-file FILE]
//                  [-orig-names=true] [-emit-defaults=false]
// Server streams come out as grpc-gateway v1 writes them: one {"result": ...} JSON
// object per message, newline-delimited, flushed after each message.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/runtime"
	"google.golang.org/grpc"

	library "gobench/gen/edgedemo/library/v1"
	edgetest "gobench/gen/edgetest/v1"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "HTTP address to listen on (port 0: any)")
	upstream := flag.String("upstream", "", "gRPC upstream address, host:port (required)")
	streamUpstream := flag.String("stream-upstream", "",
		"gRPC upstream for edgetest.v1.StreamService; the -upstream address when empty")
	portFile := flag.String("port-file", "", "write the bound HTTP port here once listening")
	origNames := flag.Bool("orig-names", true,
		"JSON field names as in the .proto (grpc-gateway v1's default); false: lowerCamelCase")
	emitDefaults := flag.Bool("emit-defaults", false, "print fields that hold their default value")
	flag.Parse()
	if *upstream == "" {
		log.Fatal("-upstream is required")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard,
		&runtime.JSONPb{OrigName: *origNames, EmitDefaults: *emitDefaults}))
	opts := []grpc.DialOption{grpc.WithInsecure()}
	if err := library.RegisterLibraryServiceHandlerFromEndpoint(ctx, mux, *upstream, opts); err != nil {
		log.Fatal(err)
	}
	if *streamUpstream == "" {
		*streamUpstream = *upstream
	}
	if err := edgetest.RegisterStreamServiceHandlerFromEndpoint(ctx, mux, *streamUpstream, opts); err != nil {
		log.Fatal(err)
	}

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	if *portFile != "" {
		if err := os.WriteFile(*portFile+".partial", []byte(strconv.Itoa(port)), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(*portFile+".partial", *portFile); err != nil {
			log.Fatal(err)
		}
	}
	server := &http.Server{Handler: mux}
	go func() {
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
		<-signals
		shutdown, done := context.WithTimeout(context.Background(), time.Second)
		defer done()
		server.Shutdown(shutdown)
	}()
	log.Printf("gogateway on http://127.0.0.1:%d, upstream %s", port, *upstream)
	if err := server.Serve(lis); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
