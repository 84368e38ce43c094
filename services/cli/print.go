package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	stromv1 "github.com/strom-io/strom/api/gen/strom/v1"
)

// printer writes aligned text output.
type printer struct {
	w *tabwriter.Writer
}

func (p *printer) row(cells ...string) { fmt.Fprintln(p.w, strings.Join(cells, "\t")) }

func (p *printer) line(format string, a ...any) { fmt.Fprintf(p.w, format+"\n", a...) }

// print writes msg as JSON with -o json, else the text that text writes.
func (g *globals) print(cmd *cobra.Command, msg proto.Message, text func(*printer)) error {
	return writeOutput(cmd.OutOrStdout(), g.output, msg, text)
}

func writeOutput(w io.Writer, format string, msg proto.Message, text func(*printer)) error {
	switch format {
	case "json":
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(msg)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	case "text", "":
		p := &printer{w: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
		text(p)
		return p.w.Flush()
	default:
		return fmt.Errorf("--output: want text or json, got %q", format)
	}
}

func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().Local().Format(time.DateTime)
}

func kindName(k stromv1.TableKind) string {
	switch k {
	case stromv1.TableKind_TABLE_KIND_LOG:
		return "log"
	case stromv1.TableKind_TABLE_KIND_PRIMARY_KEY:
		return "primary-key"
	default:
		return "?"
	}
}
