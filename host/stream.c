/*
 * stream.c — streams and events. Waiting across plugins is done on the host: the waiting call
 * blocks until the event has completed, after which the other stream's work is ordered anyway.
 */
#include <string.h>

#include "internal.h"

trit_status trit_stream_create(trit_device *device, trit_stream **out_stream)
{
    trit_clear_error();
    if (!device || !out_stream)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT,
                         "stream_create: device or out_stream is NULL");
    *out_stream = NULL;
    trit_context *ctx = device->context;
    trit_stream *s = host_calloc(ctx, 1, sizeof(*s));
    if (!s)
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "stream_create: out of host memory");
    s->device = device;
    trit_status st = device->plugin->vt.stream_create(device->state, &s->state);
    if (st != TRIT_OK) {
        host_free(ctx, s);
        return host_plugin_failed(device, st);
    }
    host_object_link(ctx, &s->obj, HOST_OBJECT_STREAM);
    *out_stream = s;
    return TRIT_OK;
}

void host_stream_release(trit_stream *s)
{
    s->device->plugin->vt.stream_destroy(s->state);
    host_free(s->device->context, s);
}

void trit_stream_destroy(trit_stream *s)
{
    if (!s)
        return;
    host_object_unlink(s->device->context, &s->obj);
    host_stream_release(s);
}

trit_status trit_stream_sync(trit_stream *s)
{
    trit_clear_error();
    if (!s)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "stream_sync: stream is NULL");
    trit_status st = s->device->plugin->vt.stream_sync(s->state);
    return st == TRIT_OK ? TRIT_OK : host_plugin_failed(s->device, st);
}

trit_device *trit_stream_device(const trit_stream *s)
{
    return s ? s->device : NULL;
}

static int events_supported(const trit_device *d)
{
    const trit_plugin_vtable *vt = &d->plugin->vt;
    return vt->event_create && vt->event_destroy && vt->event_record && vt->event_sync &&
           vt->stream_wait_event;
}

trit_status trit_event_create(trit_device *device, trit_event **out_event)
{
    trit_clear_error();
    if (!device || !out_event)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "event_create: device or out_event is NULL");
    *out_event = NULL;
    if (!events_supported(device))
        return trit_fail(TRIT_ERROR_UNSUPPORTED, "%s: the %s plugin has no events", device->label,
                         device->plugin->info.name);
    trit_context *ctx = device->context;
    trit_event *e = host_calloc(ctx, 1, sizeof(*e));
    if (!e)
        return trit_fail(TRIT_ERROR_OUT_OF_MEMORY, "event_create: out of host memory");
    e->device = device;
    trit_status st = device->plugin->vt.event_create(device->state, &e->state);
    if (st != TRIT_OK) {
        host_free(ctx, e);
        return host_plugin_failed(device, st);
    }
    host_object_link(ctx, &e->obj, HOST_OBJECT_EVENT);
    *out_event = e;
    return TRIT_OK;
}

void host_event_release(trit_event *e)
{
    e->device->plugin->vt.event_destroy(e->state);
    host_free(e->device->context, e);
}

void trit_event_destroy(trit_event *e)
{
    if (!e)
        return;
    host_object_unlink(e->device->context, &e->obj);
    host_event_release(e);
}

trit_status trit_event_record(trit_event *e, trit_stream *s)
{
    trit_clear_error();
    if (!e || !s)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "event_record: event or stream is NULL");
    if (e->device != s->device)
        return trit_fail(TRIT_ERROR_WRONG_DEVICE,
                         "event_record: the event is on %s but the stream is on %s",
                         e->device->label, s->device->label);
    trit_status st = e->device->plugin->vt.event_record(e->state, s->state);
    return st == TRIT_OK ? TRIT_OK : host_plugin_failed(e->device, st);
}

trit_status trit_stream_wait_event(trit_stream *s, trit_event *e)
{
    trit_clear_error();
    if (!e || !s)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "stream_wait_event: event or stream is NULL");
    trit_status st;
    if (e->device->plugin == s->device->plugin) {
        st = s->device->plugin->vt.stream_wait_event(s->state, e->state);
        return st == TRIT_OK ? TRIT_OK : host_plugin_failed(s->device, st);
    }
    st = e->device->plugin->vt.event_sync(e->state);
    return st == TRIT_OK ? TRIT_OK : host_plugin_failed(e->device, st);
}

trit_status trit_event_sync(trit_event *e)
{
    trit_clear_error();
    if (!e)
        return trit_fail(TRIT_ERROR_INVALID_ARGUMENT, "event_sync: event is NULL");
    trit_status st = e->device->plugin->vt.event_sync(e->state);
    return st == TRIT_OK ? TRIT_OK : host_plugin_failed(e->device, st);
}
