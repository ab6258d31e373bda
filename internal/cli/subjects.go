package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"
)

// subjectChangeCommands are `wisp admin user delete|rotate` (also spelled
// `wisp admin subject ...`), over DELETE /v1/admin/subjects/{name} and
// POST /v1/admin/subjects/{name}/rotate.
func (a *app) subjectChangeCommands() []*cobra.Command {
	del := &cobra.Command{
		Use: "delete <name>", Aliases: []string{"rm"}, Args: nargs(1, 1, "<name>"),
		Short: "Delete a user: its token stops working and its APP scripts go; refused while it owns modules",
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.simple("user", args[0], http.MethodDelete, "/v1/admin/subjects/"+url.PathEscape(args[0]),
				"deleted user %s; its activations are the admin's now\n", false)
		},
	}
	rotate := &cobra.Command{
		Use: "rotate <name>", Args: nargs(1, 1, "<name>"),
		Short: "Give a user a new token, printed once; the old one stops working",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkName("user", args[0]); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var r struct{ Name, Token string }
			data, err := c.call(a.ctx, request{method: http.MethodPost, path: "/v1/admin/subjects/" + url.PathEscape(args[0]) + "/rotate"}, &r)
			if err != nil {
				return err
			}
			return a.emit(data, func(w io.Writer) error {
				a.note("new token of user %s follows and is never shown again; the old one no longer works", r.Name)
				_, err := fmt.Fprintln(w, r.Token)
				return err
			})
		},
	}
	return []*cobra.Command{del, rotate}
}
