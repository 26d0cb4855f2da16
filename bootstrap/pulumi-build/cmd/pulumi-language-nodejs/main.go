// Command pulumi-language-nodejs is a small Node.js language host for the Pulumi engine.
//
// Why it exists: the upstream host lives in its own Go module, and the module proxy this project can reach
// does not serve that module. The engine only talks to a language host over gRPC (the LanguageRuntime service
// from sdk/v3), and the heavy lifting is done by the Node.js side that ships in @pulumi/pulumi
// (cmd/run, cmd/run-plugin, cmd/run-policy-pack). So this host only has to find those scripts in the
// program's node_modules and start them with the flags and environment they document.
//
// The engine starts it as `pulumi-language-nodejs [flags] <engine-address>`, reads the gRPC port it prints on
// stdout, and calls it until it is told to stop.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
)

// version is set at build time (-X main.version=...) to the engine version it is built with.
var version = "3.248.0"

func main() {
	if err := serve(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: %v\n", err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	flags := flag.NewFlagSet("pulumi-language-nodejs", flag.ContinueOnError)
	// The engine forwards its logging and tracing settings to every plugin; accept them so parsing succeeds.
	tracing := flags.String("tracing", "", "Zipkin-compatible tracing endpoint, passed on to the program")
	flags.Bool("logtostderr", false, "accepted for compatibility; logs go to stderr anyway")
	flags.Bool("logflow", false, "accepted for compatibility")
	flags.Int("v", 0, "accepted for compatibility")
	// Older engines passed runtime options as flags; today they arrive in ProgramInfo.Options.
	flags.String("root", "", "accepted for compatibility")
	flags.Bool("typescript", true, "accepted for compatibility")
	flags.String("tsconfig", "", "accepted for compatibility")
	flags.String("nodeargs", "", "accepted for compatibility")
	flags.String("packagemanager", "", "accepted for compatibility")
	if err := flags.Parse(args); err != nil {
		return err
	}

	host := &languageHost{tracing: *tracing}
	if flags.NArg() > 0 {
		host.engineAddress = flags.Arg(0)
	}

	// Stop serving when the engine goes away, so no host is left behind after a crash.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if host.engineAddress != "" {
		go func() {
			_ = rpcutil.Healthcheck(ctx, host.engineAddress, 5*time.Minute, cancel)
		}()
	}
	stop := make(chan bool)
	go func() {
		<-ctx.Done()
		close(stop)
	}()

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: stop,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
		Options: rpcutil.OpenTracingServerInterceptorOptions(nil),
	})
	if err != nil {
		return fmt.Errorf("could not start the language host gRPC server: %w", err)
	}

	// The engine reads the port from the first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	return <-handle.Done
}
