/* SPDX-License-Identifier: MIT */
/*
 * runtime_api.h - the Lambda Runtime API one function process talks to
 * (runtime_api.c). Internal to the functions door.
 */
#ifndef SPATE_FN_RUNTIME_API_H
#define SPATE_FN_RUNTIME_API_H

#include <stddef.h>
#include <stdint.h>

#include "engine/functions/event.h"

struct spate_sup;

/** How an invocation ended (struct spate_fn_result.kind). */
enum spate_fn_outcome {
	SPATE_FN_RESPONSE = 0, /**< POST .../response: body in the result */
	SPATE_FN_ERROR = 1,    /**< POST .../error: error type and message */
	SPATE_FN_DIED = 2,     /**< the process ended (crash, kill at the deadline, OOM) */
	SPATE_FN_LOST = 3,     /**< no answer by the deadline's grace, process still there */
};

struct spate_fn_result {
	enum spate_fn_outcome kind;
	struct spate_fn_buf body; /**< the response (kept across calls: reused) */
	char error[240];          /**< errorType: errorMessage, or how the process ended */
	uint64_t start_ns;        /**< monotonic: the invocation was posted */
	uint64_t get_ns;          /**< monotonic: the runtime's GET /next that took it was read */
	uint64_t sent_ns;         /**< monotonic: the event was handed to the runtime */
	uint64_t done_ns;         /**< monotonic: the answer arrived */
};

/** One process slot's server. Opaque. */
struct spate_fn_rapi;

struct spate_fn_rapi_opts {
	struct spate_sup *sup;   /**< the consumer's supervisor (set later: spate_fn_rapi_bind) */
	uint32_t slot;
	const char *consumer;    /**< for messages */
	const char *function_arn; /**< Lambda-Runtime-Invoked-Function-Arn */
};

/**
 * Start the server of one slot on 127.0.0.1 and a free port.
 * @return 0, -ENOMEM, -EADDRNOTAVAIL (libmicrohttpd could not start; @p err).
 */
int spate_fn_rapi_start(const struct spate_fn_rapi_opts *o, struct spate_fn_rapi **out, char *err,
			size_t errlen);
/** The supervisor whose slot this is (once it exists; before any process
 *  calls). */
void spate_fn_rapi_bind(struct spate_fn_rapi *r, struct spate_sup *sup);
/** Its port. */
uint16_t spate_fn_rapi_port(const struct spate_fn_rapi *r);
/** Stop it: waiting calls end, connections close. NULL is a no-op. */
void spate_fn_rapi_stop(struct spate_fn_rapi *r);

/**
 * Invoke generation @p gen of the slot's process with @p event (@p len
 * bytes, valid until this returns): the next GET /invocation/next of that
 * process gets it, with the deadline @p deadline_ns (CLOCK_REALTIME ns,
 * sent as Lambda-Runtime-Deadline-Ms). Runs the slot's server on the
 * calling thread until the answer, the process's death, or @p give_up_mono
 * (monotonic ns). The supervisor kills it at its deadline (spate_sup_begin
 * by the caller). One invocation at a time per slot: the caller holds it.
 * @return 0 (@p res says how it ended), -ESHUTDOWN (stopping).
 */
int spate_fn_rapi_invoke(struct spate_fn_rapi *r, int64_t gen, const char *event, size_t len,
			 uint64_t deadline_ns, uint64_t give_up_mono, struct spate_fn_result *res);

/**
 * Run the slot's server for at most @p ms milliseconds (what arrived is
 * handled: a first GET /next marks the process ready). For the thread that
 * holds the slot, while it waits for the process to be ready.
 * @return 0 or -EIO.
 */
int spate_fn_rapi_pump(struct spate_fn_rapi *r, unsigned ms);

/** The last init error the slot's process posted ("" if none). */
void spate_fn_rapi_init_error(struct spate_fn_rapi *r, char *buf, size_t len);

#endif
