package contracts

import (
	"strconv"
)

// Blob key layout shared by the scheduler, the runners and the api module.
// Every key is valid for the blob module when its parts are (repository
// names, commit ids, job and artifact ids and rendered cache keys use only
// characters that are safe in a key segment).

// SourceKey is where the scheduler stores the tar archive of a commit's
// tree (git archive), from which runners make their workspaces.
func SourceKey(repo, commit string) string { return "sources/" + repo + "/" + commit + ".tar" }

// ArtifactKey is where a job's artifact is stored, as a gzip-compressed
// tar of its paths: what GET .../builds/{number}/artifacts/{id} serves.
func ArtifactKey(repo string, build int64, id string) string {
	return "artifacts/" + repo + "/" + strconv.FormatInt(build, 10) + "/" + id + ".tar.gz"
}

// CacheBlobKey is where a cache is stored under its rendered key, as a
// gzip-compressed tar. A cache key is written once: a later job with the
// same key restores it and does not save it again.
func CacheBlobKey(repo, key string) string { return "caches/" + repo + "/" + key + ".tar.gz" }

// InputRecordKey is where the scheduler records that job of repo succeeded
// with input key inputKey (gitrepo.InputKey), so a later build with the same
// key can skip the job and reuse its artifacts.
func InputRecordKey(repo, job, inputKey string) string {
	return "inputs/" + repo + "/" + job + "/" + inputKey + ".json"
}
