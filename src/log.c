/*
 * log.c writes log lines to stderr in the chosen format. JSON lines are built
 * with cJSON so any message text is escaped correctly.
 */
#include "sb_log.h"

#include <stdarg.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

static enum sb_log_format g_fmt = SB_LOG_TEXT;
static enum sb_log_level g_min = SB_LOG_INFO;
static unsigned g_warnings;

static const char *level_name[] = {"debug", "info", "warning", "error"};

void sb_log_setup(enum sb_log_format fmt, enum sb_log_level min_level)
{
    g_fmt = fmt;
    g_min = min_level;
}

unsigned sb_log_warnings(void)
{
    return g_warnings;
}

void sb_log(enum sb_log_level lvl, const char *fmt, ...)
{
    if (lvl == SB_LOG_WARN)
        g_warnings++;
    if (lvl < g_min)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_fmt == SB_LOG_JSON) {
        char ts[32];
        sb_iso8601(sb_now_ms(), ts);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "time", ts);
        cJSON_AddStringToObject(o, "level", level_name[lvl]);
        cJSON_AddStringToObject(o, "msg", msg);
        char *s = cJSON_PrintUnformatted(o);
        fprintf(stderr, "%s\n", s ? s : "{}");
        free(s);
        cJSON_Delete(o);
    } else if (lvl == SB_LOG_INFO) {
        fprintf(stderr, "seedbatch: %s\n", msg);
    } else {
        fprintf(stderr, "seedbatch: %s: %s\n", level_name[lvl], msg);
    }
}
