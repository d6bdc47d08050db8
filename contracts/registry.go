package contracts

import (
	"slices"
	"strings"
)

// Service names: the transport services that answer requests. Each request
// type's TypeInfo.Service names one of them.
const (
	ServiceEventHub  = "eventhub"
	ServiceDatastore = "datastore"
	ServiceBlob      = "blob"
	ServiceLogging   = "logging"
	// ServiceDispatch hands jobs to runners; the buildscript module (the
	// scheduler) serves it and the jobs module's runners call it.
	ServiceDispatch = "buildscript"
)

// Topic prefixes of publications.
const (
	// EventTopicPrefix: the hub publishes each stored event as an
	// eventhub.event on EventTopic(event type).
	EventTopicPrefix = "events."
	// CancelTopicPrefix: the scheduler publishes dispatch.cancel on
	// CancelTopic(runner id).
	CancelTopicPrefix = "dispatch.cancel."
)

// EventTopic is the topic an event of type typ is published on. Subscribe
// to EventTopicPrefix for every event, or to EventTopic("build.") for
// every build event.
func EventTopic(typ string) string { return EventTopicPrefix + typ }

// CancelTopic is the topic on which a runner hears that its jobs are
// canceled.
func CancelTopic(runnerID string) string { return CancelTopicPrefix + runnerID }

// Kind says how a message type travels.
type Kind uint8

const (
	// KindRequest: sent with transport.Request to TypeInfo.Service; answered
	// by TypeInfo.Reply on success or by reply.error.
	KindRequest Kind = iota + 1
	// KindReply: answers a request.
	KindReply
	// KindEvent: the payload of an Event record (Event.Payload); the record
	// travels in eventhub messages. An envelope of an event type (the
	// payload alone, without seq and subject) is valid too, for tools and
	// tests; the modules send events inside eventhub.publish.
	KindEvent
	// KindPublication: published on topics starting with TypeInfo.Topic.
	KindPublication
)

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindReply:
		return "reply"
	case KindEvent:
		return "event"
	case KindPublication:
		return "publication"
	}
	return "kind(" + itoa(int64(k)) + ")"
}

// SubjectLevel says which of an event's repo, build and job are set: all of
// those up to the level, none below it.
type SubjectLevel uint8

const (
	SubjectNone  SubjectLevel = iota // token.created: no repo, build or job
	SubjectRepo                      // repo
	SubjectBuild                     // repo and build
	SubjectJob                       // repo, build and job
)

// TypeInfo describes one registered message type.
type TypeInfo struct {
	Name    string       // the type name, e.g. "datastore.get_repo"
	Version uint16       // the payload's current schema version; the only one decoders accept today
	Kind    Kind         // how it travels
	Service string       // KindRequest: the service that answers it
	Reply   string       // KindRequest: the reply type on success
	Topic   string       // KindPublication: the topic prefix it is published under
	Subject SubjectLevel // KindEvent: which of repo, build and job the Event record sets

	decode func(payload []byte) (Message, error)
}

// Lookup returns the registered type named name.
func Lookup(name string) (TypeInfo, bool) {
	t, ok := registry[name]
	return t, ok
}

// Types returns every registered type, sorted by name. The slice is the
// caller's.
func Types() []TypeInfo {
	ts := make([]TypeInfo, 0, len(registry))
	for _, t := range registry {
		ts = append(ts, t)
	}
	slices.SortFunc(ts, func(a, b TypeInfo) int { return strings.Compare(a.Name, b.Name) })
	return ts
}

// registry maps type names to their descriptions. It is filled once during
// package initialisation and only read afterwards, so it is safe for
// concurrent use; it is not state a caller can change. (It is set in init,
// not in its declaration, because validators read it: a declaration would
// be an initialisation cycle.)
var registry map[string]TypeInfo

func init() { registry = buildRegistry() }

func buildRegistry() map[string]TypeInfo {
	infos := []TypeInfo{
		// Replies any request may get.
		reply[Error](),
		reply[OK](),

		// Event payloads (SPEC.md §6).
		event[RepoCreated](SubjectRepo),
		event[RepoDeleted](SubjectRepo),
		event[BuildTriggered](SubjectBuild),
		event[BuildQueued](SubjectBuild),
		event[BuildStarted](SubjectBuild),
		event[BuildCanceled](SubjectBuild),
		event[BuildFinished](SubjectBuild),
		event[JobQueued](SubjectJob),
		event[JobPending](SubjectJob),
		event[JobBlocked](SubjectJob),
		event[JobApproved](SubjectJob),
		event[JobStarted](SubjectJob),
		event[JobFinished](SubjectJob),
		event[JobSkipped](SubjectJob),
		event[LogClosed](SubjectJob),
		event[SecretSet](SubjectRepo),
		event[TokenCreated](SubjectNone),

		// Event hub.
		request[PublishEvent](ServiceEventHub, TypePublished),
		reply[Published](),
		request[ReadEvents](ServiceEventHub, TypeEventBatch),
		reply[EventBatch](),
		publication[Event](EventTopicPrefix),

		// Data store.
		request[CreateRepo](ServiceDatastore, TypeRepo),
		request[GetRepo](ServiceDatastore, TypeRepo),
		request[ListRepos](ServiceDatastore, TypeRepoList),
		request[DeleteRepo](ServiceDatastore, TypeOK),
		request[GetWebhookSecret](ServiceDatastore, TypeWebhookSecret),
		reply[Repo](),
		reply[RepoList](),
		reply[WebhookSecret](),
		request[TriggerBuild](ServiceDatastore, TypeBuild),
		request[GetBuild](ServiceDatastore, TypeBuild),
		request[ListBuilds](ServiceDatastore, TypeBuildList),
		request[CancelBuild](ServiceDatastore, TypeBuild),
		request[RetryBuild](ServiceDatastore, TypeBuild),
		request[ApproveJob](ServiceDatastore, TypeBuild),
		request[PlanBuild](ServiceDatastore, TypeBuild),
		request[UpdateBuild](ServiceDatastore, TypeBuild),
		request[UpdateJob](ServiceDatastore, TypeBuild),
		reply[Build](),
		reply[BuildList](),
		request[SetSecret](ServiceDatastore, TypeOK),
		request[ListSecrets](ServiceDatastore, TypeSecretNames),
		request[GetJobSecrets](ServiceDatastore, TypeJobSecrets),
		reply[SecretNames](),
		reply[JobSecrets](),
		request[ListActive](ServiceDatastore, TypeActiveBuilds),
		reply[ActiveBuilds](),
		request[Sync](ServiceDatastore, TypeSynced),
		reply[Synced](),
		request[CreateToken](ServiceDatastore, TypeToken),
		request[CheckToken](ServiceDatastore, TypeToken),
		reply[Token](),

		// Blob store.
		request[PutBegin](ServiceBlob, TypeUpload),
		request[PutChunk](ServiceBlob, TypeReceived),
		request[PutCommit](ServiceBlob, TypeBlobInfo),
		request[PutAbort](ServiceBlob, TypeOK),
		request[GetBlob](ServiceBlob, TypeBlobChunk),
		request[StatBlob](ServiceBlob, TypeBlobInfo),
		request[ListBlobs](ServiceBlob, TypeBlobListing),
		request[DeleteBlob](ServiceBlob, TypeOK),
		reply[Upload](),
		reply[Received](),
		reply[BlobChunk](),
		reply[BlobInfo](),
		reply[BlobListing](),

		// Logging.
		request[OpenLog](ServiceLogging, TypeCredit),
		request[AppendLog](ServiceLogging, TypeCredit),
		request[ReadLog](ServiceLogging, TypeLogLines),
		request[CloseLog](ServiceLogging, TypeLogSummary),
		reply[Credit](),
		reply[LogLines](),
		reply[LogSummary](),

		// Job dispatch.
		request[RunnerHello](ServiceDispatch, TypeWelcome),
		request[RequestWork](ServiceDispatch, TypeWork),
		request[RenewLease](ServiceDispatch, TypeLease),
		request[JobResult](ServiceDispatch, TypeOK),
		request[GetStats](ServiceDispatch, TypeStats),
		reply[Stats](),
		reply[Welcome](),
		reply[Work](),
		reply[Lease](),
		publication[CancelJob](CancelTopicPrefix),
	}
	r := make(map[string]TypeInfo, len(infos))
	for _, t := range infos {
		if _, dup := r[t.Name]; dup {
			panic("contracts: type registered twice: " + t.Name) // a programming error, caught by every test run
		}
		r[t.Name] = t
	}
	return r
}

func info[T Message](kind Kind) TypeInfo {
	var zero T
	return TypeInfo{Name: zero.MessageType(), Version: 1, Kind: kind, decode: decodeAs[T]}
}

func request[T Message](service, replyType string) TypeInfo {
	t := info[T](KindRequest)
	t.Service, t.Reply = service, replyType
	return t
}

func reply[T Message]() TypeInfo { return info[T](KindReply) }

func event[T Message](subject SubjectLevel) TypeInfo {
	t := info[T](KindEvent)
	t.Subject = subject
	return t
}

func publication[T Message](topic string) TypeInfo {
	t := info[T](KindPublication)
	t.Topic = topic
	return t
}
