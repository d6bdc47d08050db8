package contracts

// Event hub messages (service ServiceEventHub).
//
// Publishing: a module sends eventhub.publish with an Event made by
// NewEvent and gets eventhub.published with the event's Seq. Publishing is
// idempotent by Event.ID: a retry (the transport's Idempotent option, or
// a resend after a crash) gets the first Seq with Duplicate set, and the
// log holds the event once.
//
// Reading: eventhub.read returns stored events after a sequence number,
// oldest first. Following: subscribe to EventTopicPrefix (or a narrower
// EventTopic) first, then read from the last Seq you hold until the batch
// is empty, and go on with the subscription, skipping events whose Seq you
// have; after a transport.MissedError, read again from the last Seq held.
// A reply.error with CodeTooOld means the hub no longer holds events after
// Since: start again from 0.
const (
	TypePublishEvent = "eventhub.publish"
	TypePublished    = "eventhub.published"
	TypeReadEvents   = "eventhub.read"
	TypeEventBatch   = "eventhub.events"
	TypeEvent        = "eventhub.event" // an Event, published on EventTopic(Event.Type)
)

// PublishEvent asks the hub to store an event (eventhub.publish →
// eventhub.published).
type PublishEvent struct {
	Event Event `json:"event"` // Seq 0; the hub assigns it
}

func (PublishEvent) MessageType() string { return TypePublishEvent }

func (m PublishEvent) Validate() error {
	return validate(TypePublishEvent, field("event", m.Event.check(false)))
}

// Published answers PublishEvent (eventhub.published).
type Published struct {
	Seq       int64 `json:"seq"`
	Duplicate bool  `json:"duplicate,omitempty"` // the hub had the event's ID already; Seq is the first one
}

func (Published) MessageType() string { return TypePublished }

func (m Published) Validate() error {
	return validate(TypePublished, field("seq", checkSeq(m.Seq)))
}

// ReadEvents asks for stored events with Seq > Since, oldest first
// (eventhub.read → eventhub.events).
type ReadEvents struct {
	Since int64 `json:"since"`           // 0 reads from the beginning
	Limit int   `json:"limit,omitempty"` // at most this many events; 0 means DefaultListLimit
	// Repo, if set, returns only events about that repository.
	Repo string `json:"repo,omitempty"`
	// Types, if set, returns only events of these types.
	Types []string `json:"types,omitempty"`
}

func (ReadEvents) MessageType() string { return TypeReadEvents }

func (m ReadEvents) Validate() error {
	return validate(TypeReadEvents,
		field("since", nonNegative(m.Since)),
		field("limit", checkLimit(m.Limit)),
		field("repo", opt(m.Repo, checkRepoName)),
		field("types", unique(m.Types, maxNamesList, checkEventType)),
	)
}

// EventBatch answers ReadEvents (eventhub.events).
type EventBatch struct {
	Events []Event `json:"events"` // ascending Seq; empty when there is nothing new
	// Next is the Since of the next read: the last Seq the hub examined,
	// which passes Events' last Seq when a filter skipped later events.
	Next int64 `json:"next"`
	// Head is the hub's latest Seq when it answered.
	Head int64 `json:"head"`
}

func (EventBatch) MessageType() string { return TypeEventBatch }

func (m EventBatch) Validate() error {
	var last int64
	events := each(m.Events, MaxListLimit, func(e Event) error {
		if err := e.check(true); err != nil {
			return err
		}
		if e.Seq <= last {
			return field("seq", problem("%d after %d: not ascending", e.Seq, last))
		}
		last = e.Seq
		return nil
	})
	var next, head error
	switch {
	case m.Next < last:
		next = problem("%d is before the last event's seq %d", m.Next, last)
	case m.Head < m.Next:
		head = problem("%d is before next %d", m.Head, m.Next)
	}
	return validate(TypeEventBatch,
		field("events", events),
		field("next", all(nonNegative(m.Next), next)),
		field("head", head),
	)
}

func checkSeq(n int64) error {
	if n < 1 {
		return problem("%d, want >= 1", n)
	}
	return nil
}

func checkEventType(s string) error {
	if _, err := eventInfo(s); err != nil {
		return problem("%s is not an event type", quote(s))
	}
	return nil
}
