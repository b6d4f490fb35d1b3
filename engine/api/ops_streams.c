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
 * MAC'd, 5 minutes). The retention period and tags are kept by the front
 * (a stream's log retention is its YAML retention); see
 * docs/kinesis-api.md.
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
	if (r == -ENOTSUP)
		return spate_api_fail(c, "LimitExceededException", "cannot create %s: %s", nm, err);
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
	if (r == -EBUSY)
		return spate_api_fail(c, "ResourceInUseException", "Stream %s has consumers (its "
				      "bus's YAML consumers read it); stop them first", nm);
	if (r == -ENOTSUP)
		return spate_api_fail(c, "LimitExceededException", "this engine cannot remove "
				      "streams while it runs");
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
	int r1 = spate_api_get_str(c, "ExclusiveStartStreamName", &start, &sl);
	int r2 = spate_api_get_str(c, "NextToken", &tok, &tl);

	if (r1 < 0 || r2 < 0 || int_in(c, "Limit", 1, 10000, &limit) < 0)
		return -1;
	if (r2 == 1) {
		struct spate_api_tok t;
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
	if (r1 == 1)
		while (first < a->n_streams && strncmp(a->streams[first]->name, start, sl) <= 0 &&
		       !(strncmp(a->streams[first]->name, start, sl) == 0 &&
			 strlen(a->streams[first]->name) > sl))
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
		struct spate_api_tok t = { .kind = SPATE_API_TOK_LIST };
		char out[SPATE_API_TOK_MAX];
		snprintf(t.stream, sizeof(t.stream), "%s", a->streams[i - 1]->name);
		spate_api_tok_encode(a, &t, out);
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

static int tag_find(const struct spate_api_stream *st, const char *key)
{
	for (uint32_t i = 0; i < st->n_tags; i++)
		if (strcmp(st->tags[i].key, key) == 0)
			return (int)i;
	return -1;
}

int spate_api_op_add_tags(struct spate_api_call *c)
{
	struct spate_api_stream *st = spate_api_call_stream(c);
	json_object *tags;
	uint32_t add = 0;

	if (!st)
		return -1;
	if (!json_object_object_get_ex(c->in, "Tags", &tags) || !tags)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "null at 'tags' failed to satisfy constraint: Member must not "
				      "be null");
	if (!json_object_is_type(tags, json_type_object))
		return spate_api_fail(c, "SerializationException", "Tags: expected a map");
	int n = json_object_object_length(tags);
	if (n < 1 || n > (int)SPATE_API_TAGS_PER_CALL)
		return spate_api_fail(c, "ValidationException", "1 validation error detected: Value "
				      "at 'tags' failed to satisfy constraint: Member must have length "
				      "between 1 and 10");
	/* Check everything before changing anything. */
	json_object_object_foreach(tags, k, v) {
		size_t kl = strlen(k), vl;
		const char *vs = json_str_of(v);
		if (!vs)
			return spate_api_fail(c, "SerializationException", "Tags.%.128s: expected a "
					      "string", k);
		vl = strlen(vs);
		if (kl < 1 || kl > 128 || vl > 256 || !spate_api_utf8_ok(k, kl, NULL) ||
		    !spate_api_utf8_ok(vs, vl, NULL))
			return spate_api_fail(c, "InvalidArgumentException", "tag keys are 1 to 128 "
					      "characters and values at most 256");
		if (tag_find(st, k) < 0)
			add++;
	}
	if (st->n_tags + add > SPATE_API_TAGS_MAX)
		return spate_api_fail(c, "LimitExceededException", "Failed to add tags to stream %s "
				      "under account " SPATE_API_ACCOUNT " because a given stream "
				      "cannot have more than 50 tags.", st->name);
	json_object_object_foreach(tags, k2, v2) {
		int i = tag_find(st, k2);
		char *val = strdup(json_object_get_string(v2));
		if (!val)
			return spate_api_fail(c, "InternalFailure", "out of memory");
		if (i >= 0) {
			free(st->tags[i].value);
			st->tags[i].value = val;
			continue;
		}
		char *key = strdup(k2);
		if (!key) {
			free(val);
			return spate_api_fail(c, "InternalFailure", "out of memory");
		}
		st->tags[st->n_tags].key = key;
		st->tags[st->n_tags].value = val;
		st->n_tags++;
	}
	spate_api_buf_str(&c->out, "");
	return 0;
}

int spate_api_op_remove_tags(struct spate_api_call *c)
{
	struct spate_api_stream *st = spate_api_call_stream(c);
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
		if (!json_str_of(json_object_array_get_idx(keys, i)))
			return spate_api_fail(c, "SerializationException", "TagKeys[%zu]: expected a "
					      "string", i);
	for (size_t i = 0; i < n; i++) {
		int k = tag_find(st, json_object_get_string(json_object_array_get_idx(keys, i)));
		if (k < 0)
			continue;
		free(st->tags[k].key);
		free(st->tags[k].value);
		memmove(&st->tags[k], &st->tags[k + 1], (st->n_tags - (uint32_t)k - 1) * sizeof(st->tags[0]));
		st->n_tags--;
	}
	spate_api_buf_str(&c->out, "");
	return 0;
}

static int tag_cmp(const void *x, const void *y)
{
	const struct spate_api_tag *const *a = x, *const *b = y;

	return strcmp((*a)->key, (*b)->key);
}

int spate_api_op_list_tags(struct spate_api_call *c)
{
	struct spate_api_stream *st = spate_api_call_stream(c);
	const struct spate_api_tag *sorted[SPATE_API_TAGS_MAX];
	const char *start = NULL;
	size_t sl;
	int64_t limit = 50;
	uint32_t n = 0, i = 0;

	if (!st || spate_api_get_str(c, "ExclusiveStartTagKey", &start, &sl) < 0 ||
	    int_in(c, "Limit", 1, 50, &limit) < 0)
		return -1;
	for (uint32_t k = 0; k < st->n_tags; k++)
		sorted[k] = &st->tags[k];
	qsort(sorted, st->n_tags, sizeof(sorted[0]), tag_cmp);
	if (start)
		while (i < st->n_tags && strcmp(sorted[i]->key, start) <= 0)
			i++;
	spate_api_buf_str(&c->out, "{\"Tags\":[");
	for (; i < st->n_tags && n < limit; i++, n++) {
		if (n)
			spate_api_buf_str(&c->out, ",");
		spate_api_buf_str(&c->out, "{\"Key\":");
		spate_api_buf_jstr(&c->out, sorted[i]->key, strlen(sorted[i]->key));
		spate_api_buf_str(&c->out, ",\"Value\":");
		spate_api_buf_jstr(&c->out, sorted[i]->value, strlen(sorted[i]->value));
		spate_api_buf_str(&c->out, "}");
	}
	spate_api_buf_fmt(&c->out, "],\"HasMoreTags\":%s}", i < st->n_tags ? "true" : "false");
	return 0;
}
