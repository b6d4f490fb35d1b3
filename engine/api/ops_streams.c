/* SPDX-License-Identifier: MIT */
/*
 * ops_streams.c - the control-plane operations of the Kinesis API front:
 * CreateStream, DeleteStream, ListStreams, DescribeStream(Summary),
 * ListShards, the retention period, tags, DescribeLimits.
 *
 * Design. Answers carry the fields AWS documents and clients read; shard
 * ids, hash key ranges and starting sequence numbers come from
 * spate/kinesis.h, so they agree with what PutRecord answers and with the
 * routing of spate_put_hash. Streams are always ACTIVE (creation is
 * synchronous), PROVISIONED, unencrypted; their shards never close (spate
 * does not split or merge), so every shard is open and has no ending
 * sequence number. ListShards and ListStreams page with NextToken (iter.c:
 * MAC'd, 5 minutes). Retention and tags are the core's
 * (spate_engine_stream_set_retention, _tag: persisted in state_dir, the
 * log deletes by the new age).
 *
 * Limits: CreateStream names follow spate's stream names (A-Z a-z 0-9 _ -,
 * at most 40 characters, "<bus>.<name>" at most 63): a Kinesis name with a
 * dot or longer is refused with InvalidArgumentException naming the rule.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/api/api_pvt.h"

static const char *json_str_of(json_object *o)
{
	return json_object_is_type(o, json_type_string) ? json_object_get_string(o) : NULL;
}

/* An integer in [lo, hi] or absent (*v unchanged). @return 0 or -1. */
static int int_in(struct spate_api_call *c, const char *key, int64_t lo, int64_t hi, int64_t *v)
{
	int64_t x;
	int r = spate_api_get_int(c, key, &x);

	if (r < 0)
		return -1;
	if (r == 0)
		return 0;
	if (x < lo || x > hi)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "'%lld' at '%s' failed to satisfy constraint: Member must have "
				      "value between %lld and %lld", (long long)x, key, (long long)lo,
				      (long long)hi);
	*v = x;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Create, delete                                                           */
/* ------------------------------------------------------------------------ */

int spate_api_op_create_stream(struct spate_api_call *c)
{
	const char *name;
	size_t nl;
	int64_t shards = 4;
	char err[256] = "", nm[SPATE_CONFIG_NAME_MAX + 1];
	int r = spate_api_get_str(c, "StreamName", &name, &nl);

	if (r < 0)
		return -1;
	if (r == 0 || nl == 0 || nl > 128)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "at 'streamName' failed to satisfy constraint: Member must have "
				      "length between 1 and 128");
	if (int_in(c, "ShardCount", 1, 100000, &shards) < 0)
		return -1;
	if (shards > SPATE_STREAM_MAX_SHARDS)
		return spate_api_fail(c, "LimitExceededException", "ShardCount %lld is above this "
				      "bus's limit of %u shards per stream", (long long)shards,
				      SPATE_STREAM_MAX_SHARDS);
	for (size_t i = 0; i < nl; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '_' || ch == '-' || ch == '.'))
			return spate_api_fail(c, "ValidationException", "1 validation error detected: "
					      "Value '%.128s' at 'streamName' failed to satisfy "
					      "constraint: Member must satisfy regular expression "
					      "pattern: [a-zA-Z0-9_.-]+", name);
		if (ch == '.' || nl > SPATE_CONFIG_NAME_MAX)
			return spate_api_fail(c, "InvalidArgumentException", "spate stream names are 1 "
					      "to %u characters from A-Z a-z 0-9 _ - (no dot): %.128s",
					      SPATE_CONFIG_NAME_MAX, name);
	}
	memcpy(nm, name, nl);
	nm[nl] = '\0';
	r = spate_api_stream_create(c->a, nm, (uint32_t)shards, err, sizeof(err));
	if (r == -EEXIST)
		return spate_api_fail(c, "ResourceInUseException", "Stream %s under account "
				      SPATE_API_ACCOUNT " already exists.", nm);
	if (r == -ENOSPC)
		return spate_api_fail(c, "LimitExceededException", "cannot create %s: this bus holds "
				      "at most %u run-time streams of %u shards in all", nm,
				      SPATE_ENGINE_RUNTIME_STREAMS_MAX, SPATE_ENGINE_RUNTIME_SHARDS_MAX);
	if (r == -EINVAL)
		return spate_api_fail(c, "InvalidArgumentException", "cannot create %s: %s", nm, err);
	if (r < 0)
		return spate_api_fail(c, "LimitExceededException", "cannot create %s: %s", nm,
				      err[0] ? err : strerror(-r));
	spate_api_buf_str(&c->out, "");
	return 0;
}

int spate_api_op_delete_stream(struct spate_api_call *c)
{
	const char *name;
	size_t nl;
	bool force = false;
	char err[256] = "", nm[SPATE_CONFIG_NAME_MAX + 1];
	int r = spate_api_get_str(c, "StreamName", &name, &nl);

	if (r < 0 || spate_api_get_bool(c, "EnforceConsumerDeletion", &force) < 0)
		return -1;
	if (r == 0 || nl == 0 || nl > 128)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "at 'streamName' failed to satisfy constraint: Member must have "
				      "length between 1 and 128");
	if (nl > SPATE_CONFIG_NAME_MAX)
		return spate_api_fail(c, "ResourceNotFoundException", "Stream %.128s under account "
				      SPATE_API_ACCOUNT " not found.", name);
	memcpy(nm, name, nl);
	nm[nl] = '\0';
	r = spate_api_stream_delete(c->a, nm, force, err, sizeof(err));
	if (r == -ENOENT)
		return spate_api_fail(c, "ResourceNotFoundException", "Stream %s under account "
				      SPATE_API_ACCOUNT " not found.", nm);
	if (r == -EPERM)
		return spate_api_fail(c, "ResourceInUseException", "Stream %s is defined in the "
				      "bus's configuration file; remove it there", nm);
	if (r == -EBUSY)
		return spate_api_fail(c, "ResourceInUseException", "Stream %s under account "
				      SPATE_API_ACCOUNT " is still being created.", nm);
	if (r < 0)
		return spate_api_fail(c, "ResourceInUseException", "cannot delete %s: %s", nm, err);
	spate_api_buf_str(&c->out, "");
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Describe, list                                                           */
/* ------------------------------------------------------------------------ */

static void put_shard(struct spate_api_call *c, struct spate_api_stream *st, uint32_t i)
{
	struct spate_api_buf *o = &c->out;
	char id[SPATE_KINESIS_SHARD_ID_LEN + 1], lo[SPATE_KINESIS_HASH_KEY_MAX + 1],
		hi[SPATE_KINESIS_HASH_KEY_MAX + 1], seq[SPATE_KINESIS_SEQ_LEN + 1];
	struct spate_stream_dur *d = spate_stream_dur(st->s, i);

	spate_kinesis_shard_id(i, id);
	spate_kinesis_hash_range(i, st->shards, lo, hi);
	spate_kinesis_seq_format(spate_stream_incarnation(st->s), d ? d->first_seq : 0, seq);
	spate_api_buf_fmt(o, "{\"ShardId\":\"%s\",\"HashKeyRange\":{\"StartingHashKey\":\"%s\","
			  "\"EndingHashKey\":\"%s\"},\"SequenceNumberRange\":"
			  "{\"StartingSequenceNumber\":\"%s\"}}", id, lo, hi, seq);
}

/* The fields DescribeStream and DescribeStreamSummary share. */
static void put_common(struct spate_api_call *c, struct spate_api_stream *st)
{
	struct spate_api_buf *o = &c->out;

	spate_api_buf_key(o, "StreamName");
	spate_api_buf_jstr(o, st->name, strlen(st->name));
	spate_api_buf_str(o, ",\"StreamARN\":");
	spate_api_buf_arn(c, st->name);
	spate_api_buf_str(o, ",\"StreamStatus\":\"ACTIVE\",\"StreamModeDetails\":{\"StreamMode\":"
			  "\"PROVISIONED\"},\"RetentionPeriodHours\":");
	spate_api_buf_fmt(o, "%u", st->retention_hours);
	spate_api_buf_str(o, ",\"StreamCreationTimestamp\":");
	spate_api_buf_time(o, st->created_ns);
	spate_api_buf_str(o, ",\"EnhancedMonitoring\":[{\"ShardLevelMetrics\":[]}],"
			  "\"EncryptionType\":\"NONE\"");
}

/* ExclusiveStartShardId: the first shard index after it (0 if absent). */
static int start_after(struct spate_api_call *c, const char *key, uint32_t *first)
{
	const char *s;
	size_t n;
	int r = spate_api_get_str(c, key, &s, &n);

	*first = 0;
	if (r <= 0)
		return r;
	int64_t i = spate_kinesis_shard_parse(s);
	if (i < 0)
		return spate_api_fail(c, "ValidationException", "%s %.64s is not a shard id", key, s);
	*first = i >= UINT32_MAX ? UINT32_MAX : (uint32_t)i + 1;
	return 1;
}

int spate_api_op_describe_stream(struct spate_api_call *c)
{
	struct spate_api_stream *st = spate_api_call_stream(c);
	int64_t limit = 100;
	uint32_t first, i;

	if (!st || int_in(c, "Limit", 1, 10000, &limit) < 0 ||
	    start_after(c, "ExclusiveStartShardId", &first) < 0)
		return -1;
	spate_api_buf_str(&c->out, "{\"StreamDescription\":{");
	put_common(c, st);
	spate_api_buf_str(&c->out, ",\"Shards\":[");
	for (i = first; i < st->shards && i - first < (uint64_t)limit; i++) {
		if (i > first)
			spate_api_buf_str(&c->out, ",");
		put_shard(c, st, i);
	}
	spate_api_buf_fmt(&c->out, "],\"HasMoreShards\":%s}}", i < st->shards ? "true" : "false");
	return 0;
}

int spate_api_op_describe_stream_summary(struct spate_api_call *c)
{
	struct spate_api_stream *st = spate_api_call_stream(c);

	if (!st)
		return -1;
	spate_api_buf_str(&c->out, "{\"StreamDescriptionSummary\":{");
	put_common(c, st);
	spate_api_buf_fmt(&c->out, ",\"OpenShardCount\":%u,\"ConsumerCount\":0}}", st->shards);
	return 0;
}

int spate_api_op_list_shards(struct spate_api_call *c)
{
	struct spate_api_stream *st;
	const char *tok;
	size_t tl;
	int64_t max = 1000;
	uint32_t first = 0, i;
	json_object *filter;
	int r = spate_api_get_str(c, "NextToken", &tok, &tl);

	if (r < 0 || int_in(c, "MaxResults", 1, 10000, &max) < 0)
		return -1;
	if (r == 1) {
		struct spate_api_tok t;
		if (json_object_object_get_ex(c->in, "StreamName", NULL) ||
		    json_object_object_get_ex(c->in, "StreamARN", NULL))
			return spate_api_fail(c, "InvalidArgumentException", "NextToken and StreamName "
					      "cannot be provided together.");
		int d = spate_api_tok_decode(c->a, tok, tl, &t);
		if (d == -ETIME)
			return spate_api_fail(c, "ExpiredNextTokenException", "NextToken has expired; "
					      "list again without it");
		if (d < 0 || t.kind != SPATE_API_TOK_LIST)
			return spate_api_fail(c, "InvalidArgumentException", "Invalid NextToken.");
		st = spate_api_stream_find(c->a, t.stream);
		if (!st || spate_stream_incarnation(st->s) != t.incarnation)
			return spate_api_fail(c, "ResourceNotFoundException", "Stream %s under account "
					      SPATE_API_ACCOUNT " not found.", t.stream);
		first = (uint32_t)t.pos;
	} else {
		st = spate_api_call_stream(c);
		if (!st || start_after(c, "ExclusiveStartShardId", &first) < 0)
			return -1;
	}
	if (json_object_object_get_ex(c->in, "ShardFilter", &filter) && filter) {
		json_object *ty;
		const char *t = json_object_object_get_ex(filter, "Type", &ty) ? json_str_of(ty) : NULL;
		static const char *const types[] = { "AFTER_SHARD_ID", "AT_TRIM_HORIZON",
						     "FROM_TRIM_HORIZON", "AT_LATEST", "AT_TIMESTAMP",
						     "FROM_TIMESTAMP" };
		bool ok = false;
		for (size_t k = 0; t && k < sizeof(types) / sizeof(types[0]); k++)
			ok |= strcmp(t, types[k]) == 0;
		if (!ok)
			return spate_api_fail(c, "ValidationException", "ShardFilter.Type must be one "
					      "of AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, "
					      "AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP");
		/* Every shard is open since the stream's creation: each filter
		 * selects them all (AFTER_SHARD_ID: those after ShardId). */
		json_object *sid;
		if (strcmp(t, "AFTER_SHARD_ID") == 0 && json_object_object_get_ex(filter, "ShardId", &sid)) {
			const char *s = json_str_of(sid);
			int64_t k = s ? spate_kinesis_shard_parse(s) : -1;
			if (k < 0)
				return spate_api_fail(c, "ValidationException", "ShardFilter.ShardId is "
						      "not a shard id");
			if ((uint64_t)k + 1 > first)
				first = (uint32_t)k + 1;
		}
	}
	spate_api_buf_str(&c->out, "{\"Shards\":[");
	for (i = first; i < st->shards && i - first < (uint64_t)max; i++) {
		if (i > first)
			spate_api_buf_str(&c->out, ",");
		put_shard(c, st, i);
	}
	spate_api_buf_str(&c->out, "]");
	if (i < st->shards) {
		struct spate_api_tok t = { .kind = SPATE_API_TOK_LIST, .pos = i,
					   .incarnation = spate_stream_incarnation(st->s) };
		char out[SPATE_API_TOK_MAX];
		snprintf(t.stream, sizeof(t.stream), "%s", st->name);
		spate_api_tok_encode(c->a, &t, out);
		spate_api_buf_fmt(&c->out, ",\"NextToken\":\"%s\"", out);
	}
	spate_api_buf_str(&c->out, "}");
	return 0;
}

int spate_api_op_list_streams(struct spate_api_call *c)
{
	struct spate_api *a = c->a;
	const char *start = NULL, *tok;
	size_t sl = 0, tl;
	int64_t limit = 100;
	uint32_t first = 0, i, n = 0;
	struct spate_api_tok t; /* start points into it */
	int r1 = spate_api_get_str(c, "ExclusiveStartStreamName", &start, &sl);
	int r2 = spate_api_get_str(c, "NextToken", &tok, &tl);

	if (r1 < 0 || r2 < 0 || int_in(c, "Limit", 1, 10000, &limit) < 0)
		return -1;
	if (r2 == 1) {
		int d = spate_api_tok_decode(a, tok, tl, &t);
		if (d == -ETIME)
			return spate_api_fail(c, "ExpiredNextTokenException", "NextToken has expired; "
					      "list again without it");
		if (d < 0 || t.kind != SPATE_API_TOK_LIST)
			return spate_api_fail(c, "InvalidArgumentException", "Invalid NextToken.");
		start = t.stream;
		sl = strlen(t.stream);
		r1 = 1;
	}
	/* Names are sorted: start after ExclusiveStartStreamName (a NUL-
	 * terminated string, from json-c or the token). */
	if (r1 == 1)
		while (first < a->n_streams && strcmp(a->streams[first]->name, start) <= 0)
			first++;
	spate_api_buf_str(&c->out, "{\"StreamNames\":[");
	for (i = first; i < a->n_streams && n < limit; i++, n++) {
		if (n)
			spate_api_buf_str(&c->out, ",");
		spate_api_buf_jstr(&c->out, a->streams[i]->name, strlen(a->streams[i]->name));
	}
	spate_api_buf_str(&c->out, "],\"StreamSummaries\":[");
	for (uint32_t k = first; k < i; k++) {
		struct spate_api_stream *st = a->streams[k];
		if (k > first)
			spate_api_buf_str(&c->out, ",");
		spate_api_buf_str(&c->out, "{\"StreamName\":");
		spate_api_buf_jstr(&c->out, st->name, strlen(st->name));
		spate_api_buf_str(&c->out, ",\"StreamARN\":");
		spate_api_buf_arn(c, st->name);
		spate_api_buf_str(&c->out, ",\"StreamStatus\":\"ACTIVE\",\"StreamModeDetails\":"
				  "{\"StreamMode\":\"PROVISIONED\"},\"StreamCreationTimestamp\":");
		spate_api_buf_time(&c->out, st->created_ns);
		spate_api_buf_str(&c->out, "}");
	}
	spate_api_buf_fmt(&c->out, "],\"HasMoreStreams\":%s", i < a->n_streams ? "true" : "false");
	if (i < a->n_streams && i > first) {
		struct spate_api_tok nt = { .kind = SPATE_API_TOK_LIST };
		char out[SPATE_API_TOK_MAX];
		snprintf(nt.stream, sizeof(nt.stream), "%s", a->streams[i - 1]->name);
		spate_api_tok_encode(a, &nt, out);
		spate_api_buf_fmt(&c->out, ",\"NextToken\":\"%s\"", out);
	}
	spate_api_buf_str(&c->out, "}");
	return 0;
}

int spate_api_op_describe_limits(struct spate_api_call *c)
{
	uint64_t open = 0;

	for (uint32_t i = 0; i < c->a->n_streams; i++)
		open += c->a->streams[i]->shards;
	spate_api_buf_fmt(&c->out, "{\"ShardLimit\":%u,\"OpenShardCount\":%llu,"
			  "\"OnDemandStreamCount\":0,\"OnDemandStreamCountLimit\":0}",
			  SPATE_STREAM_MAX_SHARDS, (unsigned long long)open);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Retention                                                                */
/* ------------------------------------------------------------------------ */

static int retention(struct spate_api_call *c, bool increase)
{
	struct spate_api_stream *st = spate_api_call_stream(c);
	int64_t h;
	int r;

	if (!st)
		return -1;
	r = spate_api_get_int(c, "RetentionPeriodHours", &h);
	if (r < 0)
		return -1;
	if (r == 0)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "null at 'retentionPeriodHours' failed to satisfy constraint: "
				      "Member must not be null");
	if (h < 24)
		return spate_api_fail(c, "InvalidArgumentException", "Minimum allowed retention period "
				      "is 24 hours. Requested retention period (%lld hours) is too "
				      "short.", (long long)h);
	if (h > 8760)
		return spate_api_fail(c, "InvalidArgumentException", "Maximum allowed retention period "
				      "is 8760 hours. Requested retention period (%lld hours) is too "
				      "long.", (long long)h);
	if (increase && h < st->retention_hours)
		return spate_api_fail(c, "InvalidArgumentException", "Requested retention period (%lld "
				      "hours) for stream %s can not be shorter than existing retention "
				      "period (%u hours). Use DecreaseRetentionPeriod API.",
				      (long long)h, st->name, st->retention_hours);
	if (!increase && h > st->retention_hours)
		return spate_api_fail(c, "InvalidArgumentException", "Requested retention period (%lld "
				      "hours) for stream %s can not be longer than existing retention "
				      "period (%u hours). Use IncreaseRetentionPeriod API.",
				      (long long)h, st->name, st->retention_hours);
	r = spate_api_stream_retention(c->a, st, (uint32_t)h);
	if (r < 0)
		return spate_api_fail(c, "LimitExceededException", "cannot change the retention of "
				      "%s: %s", st->name, strerror(-r));
	spate_api_buf_str(&c->out, "");
	return 0;
}

int spate_api_op_increase_retention(struct spate_api_call *c)
{
	return retention(c, true);
}

int spate_api_op_decrease_retention(struct spate_api_call *c)
{
	return retention(c, false);
}

/* ------------------------------------------------------------------------ */
/* Tags                                                                     */
/* ------------------------------------------------------------------------ */

int spate_api_op_add_tags(struct spate_api_call *c)
{
	struct spate_api_stream *st = spate_api_call_stream(c);
	struct spate_engine_tag tg[SPATE_API_TAGS_PER_CALL];
	json_object *tags;
	uint32_t n = 0;
	char err[256] = "";

	if (!st)
		return -1;
	if (!json_object_object_get_ex(c->in, "Tags", &tags) || !tags)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "null at 'tags' failed to satisfy constraint: Member must not "
				      "be null");
	if (!json_object_is_type(tags, json_type_object))
		return spate_api_fail(c, "SerializationException", "Tags: expected a map");
	int cnt = json_object_object_length(tags);
	if (cnt < 1 || cnt > (int)SPATE_API_TAGS_PER_CALL)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "at 'tags' failed to satisfy constraint: Member must have length "
				      "between 1 and 10");
	json_object_object_foreach(tags, k, v) {
		size_t kl = strlen(k), vl;
		const char *vs = json_str_of(v);
		if (!vs)
			return spate_api_fail(c, "SerializationException", "Tags.%.128s: expected a "
					      "string", k);
		vl = strlen(vs);
		if (kl < 1 || kl > SPATE_ENGINE_TAG_KEY_MAX || vl > SPATE_ENGINE_TAG_VALUE_MAX ||
		    !spate_api_utf8_ok(k, kl, NULL) || !spate_api_utf8_ok(vs, vl, NULL))
			return spate_api_fail(c, "InvalidArgumentException", "tag keys are 1 to 128 "
					      "characters and values at most 256");
		memcpy(tg[n].key, k, kl + 1);
		memcpy(tg[n].value, vs, vl + 1);
		n++;
	}
	/* All or nothing, persisted by the core before it returns. */
	int r = spate_engine_stream_tag(c->a->e, st->name, tg, n, err, sizeof(err));
	if (r == -ENOSPC)
		return spate_api_fail(c, "LimitExceededException", "Failed to add tags to stream %s "
				      "under account " SPATE_API_ACCOUNT " because a given stream "
				      "cannot have more than 50 tags.", st->name);
	if (r == -EINVAL)
		return spate_api_fail(c, "InvalidArgumentException", "%s", err);
	if (r < 0)
		return spate_api_fail(c, "ResourceInUseException", "cannot tag %s: %s", st->name,
				      strerror(-r));
	spate_api_buf_str(&c->out, "");
	return 0;
}

int spate_api_op_remove_tags(struct spate_api_call *c)
{
	struct spate_api_stream *st = spate_api_call_stream(c);
	const char *k[SPATE_API_TAGS_PER_CALL];
	json_object *keys;

	if (!st)
		return -1;
	if (!json_object_object_get_ex(c->in, "TagKeys", &keys) || !keys)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "null at 'tagKeys' failed to satisfy constraint: Member must not "
				      "be null");
	if (!json_object_is_type(keys, json_type_array))
		return spate_api_fail(c, "SerializationException", "TagKeys: expected a list");
	size_t n = json_object_array_length(keys);
	if (n < 1 || n > SPATE_API_TAGS_PER_CALL)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "at 'tagKeys' failed to satisfy constraint: Member must have "
				      "length between 1 and 10");
	for (size_t i = 0; i < n; i++)
		if (!(k[i] = json_str_of(json_object_array_get_idx(keys, i))))
			return spate_api_fail(c, "SerializationException", "TagKeys[%zu]: expected a "
					      "string", i);
	int r = spate_engine_stream_untag(c->a->e, st->name, k, (uint32_t)n);
	if (r < 0)
		return spate_api_fail(c, "ResourceInUseException", "cannot untag %s: %s", st->name,
				      strerror(-r));
	spate_api_buf_str(&c->out, "");
	return 0;
}

int spate_api_op_list_tags(struct spate_api_call *c)
{
	struct spate_api_stream *st = spate_api_call_stream(c);
	struct spate_engine_tag *tags;
	const char *start = NULL;
	size_t sl;
	int64_t limit = 50;
	uint32_t n = 0, i = 0;

	if (!st || spate_api_get_str(c, "ExclusiveStartTagKey", &start, &sl) < 0 ||
	    int_in(c, "Limit", 1, 50, &limit) < 0)
		return -1;
	tags = calloc(SPATE_ENGINE_TAGS_MAX, sizeof(*tags));
	if (!tags)
		return spate_api_fail(c, "InternalFailure", "out of memory");
	/* Sorted by key (the core's order). */
	int cnt = spate_engine_stream_tags(c->a->e, st->name, tags, SPATE_ENGINE_TAGS_MAX);
	if (cnt < 0) {
		free(tags);
		return spate_api_fail(c, "ResourceNotFoundException", "Stream %s under account "
				      SPATE_API_ACCOUNT " not found.", st->name);
	}
	uint32_t total = (uint32_t)cnt < SPATE_ENGINE_TAGS_MAX ? (uint32_t)cnt : SPATE_ENGINE_TAGS_MAX;
	if (start)
		while (i < total && strcmp(tags[i].key, start) <= 0)
			i++;
	spate_api_buf_str(&c->out, "{\"Tags\":[");
	for (; i < total && n < limit; i++, n++) {
		if (n)
			spate_api_buf_str(&c->out, ",");
		spate_api_buf_str(&c->out, "{\"Key\":");
		spate_api_buf_jstr(&c->out, tags[i].key, strlen(tags[i].key));
		spate_api_buf_str(&c->out, ",\"Value\":");
		spate_api_buf_jstr(&c->out, tags[i].value, strlen(tags[i].value));
		spate_api_buf_str(&c->out, "}");
	}
	spate_api_buf_fmt(&c->out, "],\"HasMoreTags\":%s}", i < total ? "true" : "false");
	free(tags);
	return 0;
}
