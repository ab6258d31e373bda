package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/spf13/cobra"
)

func moduleBody(name string) []byte {
	return jsonBody(map[string]any{"module": map[string]string{"name": name}})
}

func (a *app) modCommand() *cobra.Command {
	cmd := group("mod", "Manage modules (groups of functions; \"_\" is the default)", "module", "mods")

	list := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List modules", Args: nargs(0, 0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var mods []nameItem
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: "/v1/fn"}, &mods)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				rows := make([][]string, len(mods))
				for i, m := range mods {
					rows[i] = []string{m.Name}
				}
				return table(w, []string{"NAME"}, rows)
			})
		},
	}

	get := &cobra.Command{
		Use: "get <name>", Short: "Show a module and its functions", Args: nargs(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkName("module", args[0]); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var m struct {
				Name      string     `json:"name"`
				Functions []nameItem `json:"functions"`
			}
			data, err := c.call(a.ctx, request{method: http.MethodGet, path: fnPath(args[0], "")}, &m)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				fmt.Fprintf(w, "module %s: %d function(s)\n", m.Name, len(m.Functions))
				for _, f := range m.Functions {
					fmt.Fprintf(w, "  %s\n", f.Name)
				}
				return nil
			})
		},
	}

	create := &cobra.Command{
		Use: "create <name>", Short: "Create a module", Args: nargs(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.simple("module", args[0], http.MethodPost, "/v1/fn", "created module %s\n", true)
		},
	}

	del := &cobra.Command{
		Use: "delete <name>", Aliases: []string{"rm"}, Short: "Delete a module and all its functions", Args: nargs(1, 1, "<name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.simple("module", args[0], http.MethodDelete, fnPath(args[0], ""), "deleted module %s and its functions\n", false)
		},
	}

	rename := &cobra.Command{
		Use: "rename <name> <new-name>", Aliases: []string{"update"}, Short: "Rename a module (its functions follow)", Args: nargs(2, 2, "<name> <new-name>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, n := range args {
				if err := checkName("module", n); err != nil {
					return err
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			data, err := c.call(a.ctx, request{method: http.MethodPut, path: fnPath(args[0], ""), body: moduleBody(args[1]), contentType: "application/json"}, nil)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "renamed module %s to %s\n", args[0], args[1])
				return err
			})
		},
	}
	cmd.AddCommand(list, get, create, del, rename)
	return cmd
}

// simple runs a create (with a {"module":{"name"}} body) or a delete and
// prints one line.
func (a *app) simple(kind, name, method, path, done string, withBody bool) error {
	if err := checkName(kind, name); err != nil {
		return err
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	req := request{method: method, path: path}
	if withBody {
		req.body = moduleBody(name)
		req.contentType = "application/json"
	}
	data, err := c.call(a.ctx, req, nil)
	if err != nil {
		return err
	}
	if data == nil {
		data, _ = json.Marshal(nameItem{Name: name})
	}
	return a.emit(data, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, done, name)
		return err
	})
}
