/* SPDX-License-Identifier: MIT */
/**
 * @file spate/durability.h
 * @brief The one durability type: how a stream's records reach disk.
 *
 * The configuration (`durability:`), the stream region (a field written at
 * creation and read by every producer process), the shard log and the
 * counters region all use these values. They cross processes and files, so
 * they never change meaning: new policies take new numbers.
 */
#ifndef SPATE_DURABILITY_H
#define SPATE_DURABILITY_H

#ifdef __cplusplus
extern "C" {
#endif

/** How a stream's records reach disk (Kinesis has no counterpart: its
 *  records are always replicated before PutRecord returns). */
enum spate_durability {
	SPATE_DURABILITY_OFF = 0,      /**< memory only: no log */
	SPATE_DURABILITY_NONE = 1,     /**< a log through the page cache; no fdatasync
					    before close (survives a process crash) */
	SPATE_DURABILITY_INTERVAL = 2, /**< a log, group commit every interval */
	SPATE_DURABILITY_ALWAYS = 3,   /**< a log; a put returns once durable */
};

/** Number of policies (for tables indexed by enum spate_durability). */
#define SPATE_DURABILITY_COUNT_ 4

#ifdef __cplusplus
}
#endif

#endif /* SPATE_DURABILITY_H */
