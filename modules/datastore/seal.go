package datastore

import (
	"encoding/base64"
	"errors"

	"github.com/zeroci/zeroci/contracts"
	"github.com/zeroci/zeroci/internal/seal"
)

// sealer seals secrets for events and tables (contracts.Sealed: base64
// of a seal.Box value). The additional data binds a sealed value to where
// it belongs (a repository's secret NAME, its webhook secret).
type sealer struct{ box *seal.Box }

func newSealer(key []byte) (*sealer, error) {
	box, err := seal.New(key)
	if err != nil {
		return nil, err
	}
	return &sealer{box: box}, nil
}

func (s *sealer) seal(plain contracts.Secret, aad string) contracts.Sealed {
	return contracts.Sealed(base64.StdEncoding.EncodeToString(s.box.Seal([]byte(plain), []byte(aad))))
}

var errUnseal = errors.New("datastore: a sealed secret does not open with this data store's key")

func (s *sealer) open(sealed contracts.Sealed, aad string) (contracts.Secret, error) {
	raw, err := base64.StdEncoding.DecodeString(string(sealed))
	if err != nil {
		return "", errUnseal
	}
	plain, err := s.box.Open(raw, []byte(aad))
	if err != nil {
		return "", errUnseal
	}
	return contracts.Secret(plain), nil
}

func secretAAD(repo, name string) string { return "secret\x00" + repo + "\x00" + name }
func webhookAAD(repo string) string      { return "webhook\x00" + repo }
