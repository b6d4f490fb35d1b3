/* SPDX-License-Identifier: MIT */
/*
 * json_cases FIELD... < JSON: check that standard input is one JSON object
 * with a non-empty "cases" array whose every element has every FIELD (a
 * string or a number); print the cases' impls. Used to hold `spate bench
 * ring|pipeline|persist --json` to their documented schema.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	static char buf[1 << 20];
	size_t n = fread(buf, 1, sizeof(buf) - 1, stdin);
	json_object *root, *cases;

	buf[n] = '\0';
	root = json_tokener_parse(buf);
	if (!root || !json_object_is_type(root, json_type_object)) {
		fprintf(stderr, "json_cases: not one JSON object\n");
		return 1;
	}
	if (!json_object_object_get_ex(root, "cases", &cases) ||
	    !json_object_is_type(cases, json_type_array) || json_object_array_length(cases) == 0) {
		fprintf(stderr, "json_cases: no non-empty \"cases\" array\n");
		return 1;
	}
	for (size_t i = 0; i < json_object_array_length(cases); i++) {
		json_object *c = json_object_array_get_idx(cases, i), *v;
		for (int a = 1; a < argc; a++) {
			if (!json_object_object_get_ex(c, argv[a], &v) ||
			    !(json_object_is_type(v, json_type_string) ||
			      json_object_is_type(v, json_type_int) ||
			      json_object_is_type(v, json_type_double))) {
				fprintf(stderr, "json_cases: case %zu has no field %s: %s\n", i, argv[a],
					json_object_to_json_string(c));
				return 1;
			}
		}
		if (json_object_object_get_ex(c, "impl", &v))
			printf("%s\n", json_object_get_string(v));
	}
	json_object_put(root);
	return 0;
}
