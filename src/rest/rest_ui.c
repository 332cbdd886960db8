/* rest_ui.c - the dashboard: GET / and the page's script and style sheet.
 *
 * The three files are plain HTML, JavaScript and CSS in src/rest/ui/, compiled into rest (like
 * docs/openapi.yaml), so the page always matches the API of the binary that serves it and no
 * file on disk is ever named by a URL. They hold no data: the page reads everything from the
 * API with the token the user types (docs/dashboard.md), so they are served without one. */
#define _GNU_SOURCE
#include <stddef.h>

#include "rest.h"

extern const unsigned char ui_index_html[], ui_app_js[], ui_style_css[];
extern const size_t ui_index_html_len, ui_app_js_len, ui_style_css_len;

/* Scripts only from this server, no inline code, no frames, forms posting only here. */
#define CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

static enum MHD_Result serve(struct MHD_Connection *c, const unsigned char *data, size_t len,
                             const char *type)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;

    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "Content-Security-Policy", CSP);
    ret = http_queue(c, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result ui_page(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    (void)rest, (void)a, (void)arg;
    return serve(c, ui_index_html, ui_index_html_len, "text/html; charset=utf-8");
}

enum MHD_Result ui_script(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    (void)rest, (void)a, (void)arg;
    return serve(c, ui_app_js, ui_app_js_len, "text/javascript; charset=utf-8");
}

enum MHD_Result ui_style(Rest *rest, struct MHD_Connection *c, const Auth *a, const char *arg)
{
    (void)rest, (void)a, (void)arg;
    return serve(c, ui_style_css, ui_style_css_len, "text/css; charset=utf-8");
}
