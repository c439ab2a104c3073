/* y = W x with a 2 x 3 ternary W on the first device trit finds; prints "cpu:0: y = [-2, 4]".
 * README.md shows this file verbatim (CI checks that the two agree). */
#include <stdio.h>

#include "trit/trit.h"

#define CHECK(call)                                                                                \
    do {                                                                                           \
        if ((call) != TRIT_OK) {                                                                   \
            fprintf(stderr, "%s: %s\n", #call, trit_last_error());                                 \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

int main(void)
{
    const int8_t w[2 * 3] = {1, 0, -1, -1, 1, 1}; /* weights in {-1, 0, +1}, row-major */
    const float x[3] = {1.0f, 2.0f, 3.0f};
    const int64_t x_shape[2] = {1, 3}, y_shape[2] = {1, 2}; /* [N tokens, K] and [N, M] */
    float y[2] = {0};
    int rc = 1;
    trit_context *ctx = NULL;
    trit_device *dev = NULL;
    trit_stream *stream = NULL;
    trit_ternary *wt = NULL;
    trit_buffer *xb = NULL, *yb = NULL;
    trit_tensor xt, yt;
    trit_ternary_desc desc = {.size = sizeof(desc), /* scales NULL: one scale of 1 */
                              .rows = 2,
                              .cols = 3,
                              .format = TRIT_WEIGHTS_I8,
                              .data = w,
                              .data_bytes = sizeof(w)};

    CHECK(trit_context_create(NULL, &ctx)); /* loads every plugin found */
    CHECK(trit_device_get(ctx, 0, &dev));   /* trit-info lists the devices */
    CHECK(trit_stream_create(dev, &stream));
    CHECK(trit_ternary_upload(dev, &desc, &wt)); /* repacked for the device; w may be freed */
    CHECK(trit_buffer_alloc(dev, sizeof(x), &xb));
    CHECK(trit_buffer_alloc(dev, sizeof(y), &yb));
    CHECK(trit_buffer_upload(stream, xb, 0, x, sizeof(x)));
    CHECK(trit_tensor_make(xb, 0, TRIT_DTYPE_F32, 2, x_shape, NULL, &xt));
    CHECK(trit_tensor_make(yb, 0, TRIT_DTYPE_F32, 2, y_shape, NULL, &yt));
    CHECK(trit_ternary_gemv(stream, wt, &xt, &yt, NULL)); /* NULL: float path, no epilogue */
    CHECK(trit_buffer_download(stream, yb, 0, y, sizeof(y)));
    CHECK(trit_stream_sync(stream)); /* y is valid from here on */
    printf("%s: y = [%g, %g]\n", trit_device_label(dev), y[0], y[1]);
    rc = 0;
done:
    trit_buffer_free(yb);
    trit_buffer_free(xb);
    trit_ternary_free(wt);
    trit_stream_destroy(stream);
    trit_context_destroy(ctx);
    return rc;
}
