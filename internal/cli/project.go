package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wispfn/wisp/internal/fntemplate"
)

func (a *app) fnNewCommand() *cobra.Command {
	var lang, dir string
	var noManifest bool
	cmd := &cobra.Command{
		Use:   "new <name> -l c|go|rust",
		Short: "Make a new function project from a template",
		Long: `Make a new function project (a hello function: {"name":"Ada"} gives
{"payload":"Hello Ada!"}) in ./<name>, or in --dir. Build it with
'wisp fn build <dir>'.

Beside the project directory it also writes a starter deploy manifest,
wisp.yaml (docs/manifest.md), that builds and deploys the function with
'wisp deploy'; when that manifest exists already, the function is added to
its list. --no-manifest leaves it out.`,
		Args: nargs(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if lang == "" {
				return usagef(cmd, "choose a language with -l %s", strings.Join(fntemplate.Languages, "|"))
			}
			p := fntemplate.Project{Name: args[0], Language: lang}
			if err := p.Validate(); err != nil {
				return err
			}
			if dir == "" {
				dir = args[0]
			}
			written, err := fntemplate.New(dir, p)
			if err != nil {
				return err
			}
			out := map[string]any{"name": p.Name, "language": p.Language, "dir": dir, "files": written}
			var manifest, action string
			if !noManifest {
				manifest, action, err = starterManifest(dir, p.Name)
				if err != nil {
					return err
				}
				out["manifest"], out["manifest_action"] = manifest, action
			}
			data, _ := json.Marshal(out)
			return a.emit(data, func(w io.Writer) error {
				fmt.Fprintf(w, "created %s function %s in %s\n", p.Language, p.Name, dir)
				for _, f := range written {
					fmt.Fprintf(w, "  %s\n", filepath.Join(dir, f))
				}
				switch action {
				case "created", "extended":
					fmt.Fprintf(w, "%s deploy manifest %s\n", action, manifest)
					_, err := fmt.Fprintf(w, "next: wisp deploy -f %s (builds and uploads it), or wisp fn build %s && wisp fn upload %s %s\n",
						manifest, dir, p.Name, filepath.Join(dir, p.Name+".wasm"))
					return err
				case "kept":
					fmt.Fprintf(w, "left %s alone: it is not a deploy manifest\n", manifest)
				case "listed":
					fmt.Fprintf(w, "deploy manifest %s already lists %s\n", manifest, p.Name)
				}
				_, err := fmt.Fprintf(w, "next: wisp fn build %s && wisp fn upload %s %s\n", dir, p.Name, filepath.Join(dir, p.Name+".wasm"))
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&lang, "language", "l", "", "language of the template: "+strings.Join(fntemplate.Languages, ", "))
	cmd.Flags().StringVarP(&dir, "dir", "d", "", "project directory (default ./<name>)")
	cmd.Flags().BoolVar(&noManifest, "no-manifest", false, "do not write or extend the deploy manifest beside the project")
	cmd.RegisterFlagCompletionFunc("language", cobra.FixedCompletions(fntemplate.Languages, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (a *app) fnBuildCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "build [dir]",
		Short: "Build a function project into <dir>/<name>.wasm",
		Long: `Build a project made by 'wisp fn new' with its language's toolchain:
  c     clang --target=wasm32-wasi -mexec-model=reactor   (WISP_CLANG overrides)
  go    GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared  (WISP_GO)
  rust  rustc --crate-type cdylib --target wasm32-wasi   (WISP_RUSTC)`,
		Args: nargs(0, 1, "[dir]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			tc := fntemplate.Toolchain{Clang: a.getenv("WISP_CLANG"), Go: a.getenv("WISP_GO"), Rustc: a.getenv("WISP_RUSTC")}
			out, err := fntemplate.Build(a.ctx, dir, tc, a.stderr)
			if errors.Is(err, fntemplate.ErrBuild) {
				return fmt.Errorf("%v (the compiler's messages are above)", err)
			}
			if err != nil {
				return err
			}
			st, err := os.Stat(out)
			if err != nil {
				return err
			}
			data, _ := json.Marshal(map[string]any{"wasm": out, "size": st.Size()})
			return a.emit(data, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "built %s (%s)\n", out, humanBytes(st.Size()))
				return err
			})
		},
	}
}
